package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kvsrtc/kvsrtc/internal/buildinfo"
)

func init() {
	register(command{name: "version", summary: "print the version, VCS revision, Go version and pion/AWS SDK versions", run: runVersion})
}

func runVersion(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "version", "[--json]")
	jsonOut := fs.Bool("json", false, "print one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	in := buildinfo.Get()
	if *jsonOut {
		return json.NewEncoder(env.Stdout).Encode(in)
	}
	_, err := fmt.Fprint(env.Stdout, in.String())
	return err
}
