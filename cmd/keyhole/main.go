// Command keyhole is the keyhole gateway and its CLI: `keyhole serve` runs a
// node; every other command talks to a node's admin API.
package main

import (
	"os"

	"github.com/keyhole-gw/keyhole/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
