package env

// MkdirAllDurable makes dir and its missing parents on fs and syncs every
// directory on the path, so that the entries leading to dir survive a
// power loss: a store opened there (Pebble syncs only its own directory)
// does not vanish whole when the machine loses power soon after.
func MkdirAllDurable(fs FS, dir string) error {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for d := dir; ; {
		parent := fs.PathDir(d)
		if err := SyncDir(fs, parent); err != nil {
			return err
		}
		if parent == d || parent == "" || parent == "." || parent == "/" {
			return nil
		}
		d = parent
	}
}

// SyncDir syncs a directory, so that its entries survive a power loss.
func SyncDir(fs FS, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
