// Package version tells what was built: the module version, the VCS commit and the Go
// toolchain, read from the binary's build information.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit may be set at link time, e.g.
//
//	go build -ldflags "-X github.com/bodystream/bodystream/internal/version.Version=v1.2.3"
//
// When empty they come from the build information Go records (the module version, and
// vcs.revision for builds inside a git checkout).
var (
	Version string
	Commit  string
)

// Info is what was built.
type Info struct {
	Version   string
	Commit    string
	GoVersion string
}

// Get returns the build's Info; unknown parts read "unknown".
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && info.Commit == "":
				info.Commit = s.Value
			case s.Key == "vcs.modified" && s.Value == "true" && info.Commit != "" && Commit == "":
				info.Commit += "-dirty"
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the line `bodystream -version` prints.
func (i Info) String() string {
	return fmt.Sprintf("bodystream %s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}
