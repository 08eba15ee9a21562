// Command trace reports which MQTT normative statements the project's tests
// cite, per version and chapter.
//
// Usage:
//
//	go run ./spec/cmd/trace [-root .] [-v] [-min-v5 PCT] [-min-v311 PCT]
//
// For each version it prints a table with one line per chapter (the first
// number of the section) and a total line. The columns are:
//
//	statements      statements in the catalogue
//	server          statements binding the server (binds Server or Both)
//	checkable       server-binding statements our tests can check (check is broker or codec)
//	cited           statements cited by at least one test
//	cited-checkable checkable statements cited by at least one test
//	coverage        cited-checkable as a percentage of checkable
//
// With -v it also lists the checkable statements that no test cites.
//
// Exit status: 0 on success; 1 if any citation is bare (no version), names an
// unknown version or an unknown statement, or if a -min-v5/-min-v311
// threshold is given and the total coverage of that version is below it;
// 2 on usage or I/O errors.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/skybridge-mq/skybridge/spec"
	"github.com/skybridge-mq/skybridge/spec/trace"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// percentFlag is a coverage threshold that remembers whether it was given.
type percentFlag struct {
	set bool
	pct float64
}

func (p *percentFlag) String() string {
	if !p.set {
		return ""
	}
	return fmt.Sprint(p.pct)
}

func (p *percentFlag) Set(s string) error {
	var v float64
	if _, err := fmt.Sscan(strings.TrimSuffix(s, "%"), &v); err != nil {
		return errors.New("want a percentage, e.g. 60 or 60%")
	}
	if v < 0 || v > 100 {
		return errors.New("want a percentage between 0 and 100")
	}
	p.set, p.pct = true, v
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("trace", flag.ContinueOnError)
	fset.SetOutput(stderr)
	root := fset.String("root", ".", "directory to scan for *_test.go files")
	verbose := fset.Bool("v", false, "list the checkable statements that no test cites")
	mins := map[spec.Version]*percentFlag{spec.V5: {}, spec.V311: {}}
	fset.Var(mins[spec.V5], "min-v5", "fail if less than `PCT` percent of checkable v5 statements are cited")
	fset.Var(mins[spec.V311], "min-v311", "fail if less than `PCT` percent of checkable v3.1.1 statements are cited")
	fset.Usage = func() {
		fmt.Fprintln(stderr, "usage: trace [-root dir] [-v] [-min-v5 PCT] [-min-v311 PCT]")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stderr, "trace: unexpected arguments %q\n", fset.Args())
		fset.Usage()
		return 2
	}

	rep, err := trace.Scan(*root)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprintf(stdout, "MQTT statement citations in %d test files under %s\n", rep.Files, *root)

	status := 0
	for _, v := range spec.Versions() {
		cov, err := rep.Coverage(v)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		fmt.Fprintln(stdout)
		printCoverage(stdout, cov, *verbose)
		if m := mins[v]; m.set && cov.Total.Percent() < m.pct {
			fmt.Fprintf(stderr, "trace: %s coverage %.1f%% is below the required %g%%\n", v, cov.Total.Percent(), m.pct)
			status = 1
		}
	}

	if len(rep.Problems) > 0 {
		fmt.Fprintf(stderr, "\n%d bad citations:\n", len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintln(stderr, "  "+p.String())
		}
		status = 1
	}
	return status
}

func printCoverage(w io.Writer, cov trace.Coverage, verbose bool) {
	fmt.Fprintf(w, "MQTT %s\n", cov.Version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "chapter\tstatements\tserver\tcheckable\tcited\tcited-checkable\tcoverage\t")
	for _, r := range append(cov.Chapters, cov.Total) {
		pct := "-"
		if r.Checkable > 0 {
			pct = fmt.Sprintf("%.1f%%", r.Percent())
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n",
			r.Chapter, r.Statements, r.ServerBinding, r.Checkable, r.Cited, r.CitedCheckable, pct)
	}
	tw.Flush()
	if !verbose {
		return
	}
	fmt.Fprintf(w, "\nuncited checkable %s statements (%d):\n", cov.Version, len(cov.Uncited))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range cov.Uncited {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.ID, s.Binds, s.Check, s.Summary)
	}
	tw.Flush()
}
