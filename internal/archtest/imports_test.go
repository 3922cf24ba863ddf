package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/kvsrtc/kvsrtc/"

// allowed lists, per package (by path relative to the module; a trailing
// "/..." also covers sub-packages), which of the module's packages it may
// import directly. Packages not listed here may not exist: add a rule when
// adding a package.
var allowed = map[string][]string{
	"kvsproto":          {},
	"sigv4":             {"kvsproto"},
	"control":           {"kvsproto", "sigv4", "internal/netdiag"},
	"signaling":         {"kvsproto", "sigv4", "internal/netdiag"},
	"rtc":               {"kvsproto"},
	"media/...":         {"rtc", "kvsproto", "media/..."},
	"cause":             {"kvsproto", "control", "signaling", "internal/netdiag"}, // causes, their wording, the one classification; pion-free
	"retry":             {"kvsproto"},                                             // retry policy and client ids; stdlib + kvsproto
	"viewer":            {"kvsproto", "sigv4", "control", "signaling", "rtc", "media/...", "cause", "retry"},
	"master":            {"kvsproto", "sigv4", "control", "signaling", "rtc", "media/..."},
	"emulator/...":      {"kvsproto", "sigv4", "emulator/..."},
	"player/...":        {"kvsproto", "sigv4", "control", "signaling", "cause", "retry", "player/...", "internal/buildinfo"},
	"doctor":            {"kvsproto", "sigv4", "control", "signaling", "rtc", "media/...", "cause", "retry"},
	"relay":             {"kvsproto", "control", "rtc", "media/...", "cause", "viewer"}, // one upstream viewer per channel, fanned out; no HTTP
	"whep":              {"relay", "rtc", "media/..."},                                  // WHEP (RFC 9725) handler and client over relay
	"storage":           {"emulator", "kvsproto", "rtc", "media/..."},                   // the emulator's storage session media (pion); emulator never imports it
	"internal/cli":      {"*"},
	"internal/archtest": {},
	"internal/testutil": {}, // helpers for test files; stdlib only
	"internal/netdiag":  {}, // why a service was unreachable; stdlib only
	"cmd/kvsrtc":        {"internal/cli"},
	"examples/...":      {"*"},

	"kvstest": {"emulator", "control", "master", "media/...", "rtc", "kvsproto", "sigv4", "storage"}, // the emulator for tests

	"internal/browsertest": {"*"}, // end-to-end tests in Chromium; test files only
	"internal/resilience":  {"*"}, // the resilience matrix and the chaos soak; test files only
	"internal/interop/...": {"*"}, // interoperability with independent stacks; test files only

	"internal/buildinfo": {}, // version and build information; stdlib only
}

// thirdParty lists modules a package must not depend on at all (directly or
// not), to keep the layers honest.
var forbiddenDeps = map[string][]string{
	"kvsproto":          {"."}, // stdlib only: any path with a dot in its first element
	"sigv4":             {"."},
	"internal/testutil": {"."},
	"internal/netdiag":  {"."},
	"signaling":         {"github.com/pion/"},
	"emulator/...":      {"github.com/pion/webrtc", "github.com/aws/aws-sdk-go-v2", mod + "control", mod + "signaling", mod + "rtc", mod + "viewer", mod + "master"},
	"control":           {"github.com/pion/"},
	"cause":             {"github.com/pion/"},
	"retry":             {"."},
	"player/...":        {"github.com/pion/"}, // the web player runs no WebRTC itself: go list -deps ./player shows no pion package

	"internal/buildinfo": {"."},
}

func match(pattern, rel string) bool {
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == p || strings.HasPrefix(rel, p+"/")
	}
	return pattern == rel
}

func rule(table map[string][]string, rel string) ([]string, bool) {
	for p, v := range table {
		if match(p, rel) {
			return v, true
		}
	}
	return nil, false
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-e", "-json", "../../...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		rel := strings.TrimPrefix(p.ImportPath, mod)
		allow, ok := rule(allowed, rel)
		if !ok {
			t.Errorf("package %s has no import rule: add it to allowed in %s", rel, "internal/archtest/imports_test.go")
			continue
		}
		for _, imp := range p.Imports {
			if imp == mod+"internal/cli" && rel != "cmd/kvsrtc" {
				t.Errorf("%s imports internal/cli: nothing but cmd/kvsrtc may", rel)
			}
			irel, ours := strings.CutPrefix(imp, mod)
			if !ours || len(allow) == 1 && allow[0] == "*" {
				continue
			}
			okImp := false
			for _, a := range allow {
				if match(a, irel) {
					okImp = true
				}
			}
			if !okImp {
				t.Errorf("%s may not import %s (allowed: %v)", rel, irel, allow)
			}
		}
		if bad, ok := rule(forbiddenDeps, rel); ok {
			for _, d := range p.Deps {
				for _, b := range bad {
					if b == "." {
						first, _, _ := strings.Cut(d, "/")
						if strings.Contains(first, ".") && !strings.HasPrefix(d, mod) {
							t.Errorf("%s must use the standard library only, but depends on %s", rel, d)
						}
					} else if strings.HasPrefix(d, b) {
						t.Errorf("%s must not depend on %s (via %s)", rel, b, d)
					}
				}
			}
		}
	}
	if n < 3 {
		t.Fatalf("go list found only %d packages", n)
	}
}
