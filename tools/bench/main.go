// Command bench is keyhole's own benchmark (SPEC §11, docs/performance.md):
// it starts, on loopback, an upstream, keyhole (embedded store, sync audit,
// body capture on) and a bare httputil.ReverseProxy doing the same token
// check and header swap (the baseline), then loads each in turn with a Go
// load generator, rounds interleaved, and prints medians and the ratios
// keyhole ÷ baseline.
//
// On a two-core machine the servers under test run pinned to core 0
// (taskset) with GOMAXPROCS=1, and the load generator and the upstream to
// core 1, so the proxy under test has a core of its own and both proxies
// are measured in the same conditions.
//
//	go run ./tools/bench run                # the full comparison
//	go run ./tools/bench run -rounds 5 -duration 10s -scenarios max,sse
//
// Subcommands upstream, baseline and load are what `run` starts; they can
// be used by hand too.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "upstream":
		err = upstreamCmd(os.Args[2:])
	case "baseline":
		err = baselineCmd(os.Args[2:])
	case "load":
		err = loadCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: bench run|upstream|baseline|load [flags]   (bench <cmd> -h for flags)`)
	os.Exit(2)
}
