// Package buildinfo says which oncelog this binary is: the module version,
// the VCS commit and its time that the Go toolchain stamped into it
// (runtime/debug.ReadBuildInfo), and the Go version. It is shared by
// `oncelog version` and the broker's oncelog_build_info metric, so the two
// always agree.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Info describes the running binary. Fields the toolchain did not stamp
// are "unknown" rather than empty, so output and metric labels stay readable.
type Info struct {
	// Version is the main module's version: a tag (v0.3.0), a pseudo-version
	// for an untagged commit, or "(devel)" when the toolchain had none.
	Version string `json:"version"`
	// Commit is vcs.revision: the full commit hash, "unknown" when the binary
	// was built without VCS information (go run, go test, -buildvcs=false,
	// or outside a git checkout).
	Commit string `json:"commit"`
	// CommitTime is vcs.time, the commit's time in RFC 3339 (Go stamps no
	// build time; the commit time is the reproducible substitute).
	CommitTime string `json:"commit_time"`
	// Modified is vcs.modified: the work tree had uncommitted changes.
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

const unknown = "unknown"

// Get returns the running binary's build information (read once).
var Get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(bi, ok)
})

func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	info := Info{
		Version:    unknown,
		Commit:     unknown,
		CommitTime: unknown,
		GoVersion:  runtime.Version(),
		Platform:   runtime.GOOS + "/" + runtime.GOARCH,
	}
	if !ok || bi == nil {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				info.Commit = s.Value
			}
		case "vcs.time":
			if s.Value != "" {
				info.CommitTime = s.Value
			}
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// ShortCommit is the commit's first 12 hex digits, "+dirty" when modified.
func (i Info) ShortCommit() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if i.Modified && c != unknown {
		c += "+dirty"
	}
	return c
}
