package main

import (
	"runtime/debug"

	"github.com/prometheus/common/version"
)

// A plain `go build` or `go install` sets no -ldflags, so --version and emergent_build_info
// would be empty; the Go toolchain records the module version and the VCS state in the binary.
func init() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if version.Version == "" {
		version.Version = info.Main.Version // "(devel)" for a build from a checkout
	}
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision" && version.Revision == "":
			version.Revision = s.Value
		case s.Key == "vcs.time" && version.BuildDate == "":
			version.BuildDate = s.Value
		}
	}
}
