package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	withVCS := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"},
	}}
	devel := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	tests := []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		ok     bool
		want   string
	}{
		{"ldflags wins", "v1.2.3", withVCS, true, "v1.2.3 (revision 0123456789ab+modified, go1.26.8)"},
		{"module version", "", withVCS, true, "v0.3.0 (revision 0123456789ab+modified, go1.26.8)"},
		{"devel build", "", devel, true, "devel (go1.26.8)"},
		{"no build info", "", nil, false, "devel ("},
		{"no build info, linked", "v9", nil, false, "v9 ("},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromBuildInfo(tt.linked, tt.bi, tt.ok).String()
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("fromBuildInfo(%q) = %q, want prefix %q", tt.linked, got, tt.want)
			}
		})
	}
}

func TestReadUsesLinkedVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v7.7.7-test"
	if got := Read().Version; got != "v7.7.7-test" {
		t.Errorf("Read().Version = %q, want the linked v7.7.7-test", got)
	}
}
