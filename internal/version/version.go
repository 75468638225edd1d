// Package version is keyhole's version, set at build time with
// -ldflags "-X github.com/keyhole-gw/keyhole/internal/version.Version=v1.2.3".
package version

import "runtime/debug"

// Version is the release version; "dev" builds add the VCS revision when
// the Go toolchain recorded it.
var Version = "0.1.0-dev"

// String is the version with the build's revision, if known.
func String() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}
