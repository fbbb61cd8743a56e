package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release version, set at link time with
// -ldflags "-X github.com/tenantvault/tenantvault/internal/buildinfo.Version=v1.2.3".
// Empty, the version comes from the build information.
var Version = ""

// Info is what a binary knows of its own build.
type Info struct {
	Version   string // the release version: Version, else the main module's, else "devel"
	Revision  string // the VCS revision, when the build recorded it
	Modified  bool   // the work tree had uncommitted changes
	GoVersion string // the toolchain that built it
}

// Read returns the running binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(Version, bi, ok)
}

func fromBuildInfo(linked string, bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: linked, GoVersion: runtime.Version()}
	if !ok || bi == nil {
		if info.Version == "" {
			info.Version = "devel"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is one line: "v1.2.3 (revision 0123abc, go1.26.8)".
func (i Info) String() string {
	s := i.Version + " ("
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += "revision " + rev
		if i.Modified {
			s += "+modified"
		}
		s += ", "
	}
	return s + fmt.Sprintf("%s)", i.GoVersion)
}
