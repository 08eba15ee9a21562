// Package env is the only door between Skybridge's core and the outside
// world: time (Clock), randomness (Rand), files (FS, Pebble's vfs.FS) and
// sockets (Network).
//
// # Contract
//
// Core packages (everything under impl/ except impl/env and impl/server, and
// the cores of sim/, edge/ and cloud/) never read the wall clock, never use
// global random sources, never touch files or sockets and never start
// goroutines. They receive an Env (or the single piece they need) from a
// runtime and call nothing else. Two runtimes exist: production (real time,
// real sockets, Pebble on disk; see Real) and the deterministic simulator in
// sim/, which implements the same interfaces on a virtual clock, a virtual
// network and Pebble's in-memory FS.
//
// purity_test.go in this package enforces the rule by parsing the core's Go
// files; its list of exempt runtime packages is the only way out.
package env
