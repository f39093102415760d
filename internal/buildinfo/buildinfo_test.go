package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/oncelog/oncelog", Version: "v0.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "b8f9b7b0123456789abcdef0123456789abcdef0"},
			{Key: "vcs.time", Value: "2026-12-01T23:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := fromBuildInfo(bi, true)
	if got.Version != "v0.4.0" || got.Commit != "b8f9b7b0123456789abcdef0123456789abcdef0" || got.CommitTime != "2026-12-01T23:00:00Z" || !got.Modified || got.GoVersion != "go1.26.0" {
		t.Errorf("fromBuildInfo = %+v", got)
	}
	if s := got.ShortCommit(); s != "b8f9b7b01234+dirty" {
		t.Errorf("ShortCommit = %q", s)
	}
}

// go run and go test stamp no VCS settings: every field still says something.
func TestFromBuildInfoWithoutVCS(t *testing.T) {
	got := fromBuildInfo(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true)
	if got.Version != "(devel)" || got.Commit != "unknown" || got.CommitTime != "unknown" || got.GoVersion == "" || got.ShortCommit() != "unknown" {
		t.Errorf("fromBuildInfo without VCS = %+v", got)
	}
	if none := fromBuildInfo(nil, false); none.Version != "unknown" || none.Platform == "" {
		t.Errorf("fromBuildInfo(nil) = %+v", none)
	}
}
