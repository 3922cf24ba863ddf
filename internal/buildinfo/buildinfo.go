// Package buildinfo reports what a kvsrtc binary was built from: the module
// version, the VCS revision and time, the Go version and the versions of the
// libraries whose behaviour matters most when comparing runs (pion/webrtc
// and the AWS SDK). Everything comes from runtime/debug.ReadBuildInfo.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Module paths whose versions Info reports.
const (
	PionModule   = "github.com/pion/webrtc/v4"
	AWSSDKModule = "github.com/aws/aws-sdk-go-v2"
)

// Info is the build information of the running binary. Fields the binary
// does not carry (e.g. no VCS stamp with -buildvcs=false, or a test binary)
// are "".
type Info struct {
	// Version is the main module's version: a tag, a pseudo-version
	// derived from the VCS revision, or "(devel)".
	Version string `json:"version"`
	// Revision is the VCS revision (commit hash).
	Revision string `json:"revision,omitempty"`
	// Time is the commit time of Revision (RFC 3339).
	Time string `json:"time,omitempty"`
	// Modified is true when the working tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// GoVersion is the Go toolchain that built the binary, e.g. "go1.26.1".
	GoVersion string `json:"go"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
	// Pion is the version of github.com/pion/webrtc/v4.
	Pion string `json:"pionWebrtc,omitempty"`
	// AWSSDK is the version of github.com/aws/aws-sdk-go-v2.
	AWSSDK string `json:"awsSdkGoV2,omitempty"`
}

// Get returns the running binary's build information (read once).
var Get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	}
	return fromBuildInfo(bi)
})

// fromBuildInfo extracts Info from bi.
func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion, Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	if in.GoVersion == "" {
		in.GoVersion = runtime.Version()
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		in.Platform = goos + "/" + goarch
	}
	for _, d := range bi.Deps {
		v := d.Version
		if d.Replace != nil {
			v = d.Replace.Version + " (replaces " + d.Version + ")"
			if d.Replace.Version == "" {
				v = d.Version + " (replaced by " + d.Replace.Path + ")"
			}
		}
		switch d.Path {
		case PionModule:
			in.Pion = v
		case AWSSDKModule:
			in.AWSSDK = v
		}
	}
	return in
}

// Short is a one-line form, e.g.
// "v1.2.0 (abc1234, 2026-01-02T03:04:05Z) go1.26.1".
func (in Info) Short() string {
	var b strings.Builder
	b.WriteString(in.Version)
	if in.Revision != "" {
		rev := in.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if in.Modified {
			rev += "+modified"
		}
		fmt.Fprintf(&b, " (%s", rev)
		if in.Time != "" {
			b.WriteString(", " + in.Time)
		}
		b.WriteString(")")
	}
	b.WriteString(" " + in.GoVersion)
	return b.String()
}

// String is the multi-line form "kvsrtc version" prints.
func (in Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kvsrtc %s\n", in.Version)
	if in.Revision != "" {
		mod := ""
		if in.Modified {
			mod = " (modified)"
		}
		fmt.Fprintf(&b, "revision %s%s\n", in.Revision, mod)
	}
	if in.Time != "" {
		fmt.Fprintf(&b, "time     %s\n", in.Time)
	}
	fmt.Fprintf(&b, "go       %s %s\n", in.GoVersion, in.Platform)
	fmt.Fprintf(&b, "%s %s\n", PionModule, orUnknown(in.Pion))
	fmt.Fprintf(&b, "%s %s\n", AWSSDKModule, orUnknown(in.AWSSDK))
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(not linked)"
	}
	return s
}
