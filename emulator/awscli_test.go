package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
)

// awsCLI runs the AWS CLI against srv with an isolated configuration and
// the environment the service prints at start-up.
type awsCLI struct {
	t   *testing.T
	bin string
	env []string
}

func newAWSCLI(t *testing.T, srv *emulator.Server) *awsCLI {
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Fatalf("the AWS CLI (aws) is not on PATH: scripts/test.sh installs it (Debian package awscli): %v", err)
	}
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	}
	for _, k := range []string{"PYENV_ROOT", "PYENV_VERSION", "LANG", "LC_ALL"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, srv.Env()...)
	return &awsCLI{t: t, bin: bin, env: env}
}

// run returns stdout, stderr and the exit code.
func (a *awsCLI) run(args ...string) (string, string, int) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.bin, append(args, "--output", "json")...)
	cmd.Env = a.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			a.t.Fatalf("aws %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

func (a *awsCLI) mustJSON(out any, args ...string) {
	a.t.Helper()
	stdout, stderr, code := a.run(args...)
	if code != 0 {
		a.t.Fatalf("aws %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	if out != nil && strings.TrimSpace(stdout) != "" {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			a.t.Fatalf("aws %s: %v: %s", strings.Join(args, " "), err, stdout)
		}
	}
}

func TestAWSCLI(t *testing.T) {
	t.Parallel()
	srv := start(t, emulator.Config{})
	aws := newAWSCLI(t, srv)
	ep := []string{"--endpoint-url", srv.URL()}

	var created struct{ ChannelARN string }
	aws.mustJSON(&created, append([]string{"kinesisvideo", "create-signaling-channel", "--channel-name", "cli-demo",
		"--single-master-configuration", "MessageTtlSeconds=30"}, ep...)...)
	if !strings.Contains(created.ChannelARN, ":channel/cli-demo/") {
		t.Fatalf("ARN %q", created.ChannelARN)
	}
	var desc struct {
		ChannelInfo struct {
			ChannelARN, Version, ChannelStatus string
			CreationTime                       float64
		}
	}
	aws.mustJSON(&desc, append([]string{"kinesisvideo", "describe-signaling-channel", "--channel-name", "cli-demo"}, ep...)...)
	if desc.ChannelInfo.ChannelARN != created.ChannelARN || desc.ChannelInfo.ChannelStatus != "ACTIVE" || desc.ChannelInfo.CreationTime == 0 {
		t.Fatalf("describe %+v", desc)
	}
	var list struct {
		ChannelInfoList []struct{ ChannelName string }
	}
	aws.mustJSON(&list, append([]string{"kinesisvideo", "list-signaling-channels"}, ep...)...)
	if len(list.ChannelInfoList) != 1 || list.ChannelInfoList[0].ChannelName != "cli-demo" {
		t.Fatalf("list %+v", list)
	}
	aws.mustJSON(nil, append([]string{"kinesisvideo", "update-signaling-channel", "--channel-arn", created.ChannelARN,
		"--current-version", desc.ChannelInfo.Version, "--single-master-configuration", "MessageTtlSeconds=60"}, ep...)...)

	var eps struct {
		ResourceEndpointList []struct{ Protocol, ResourceEndpoint string }
	}
	aws.mustJSON(&eps, append([]string{"kinesisvideo", "get-signaling-channel-endpoint", "--channel-arn", created.ChannelARN,
		"--single-master-channel-endpoint-configuration", "Protocols=WSS,HTTPS,Role=VIEWER"}, ep...)...)
	var https string
	for _, e := range eps.ResourceEndpointList {
		if e.Protocol == "HTTPS" {
			https = e.ResourceEndpoint
		}
	}
	if https == "" || len(eps.ResourceEndpointList) != 2 {
		t.Fatalf("endpoints %+v", eps)
	}
	var ice struct {
		IceServerList []struct {
			Uris               []string
			Username, Password string
			Ttl                int
		}
	}
	aws.mustJSON(&ice, "kinesis-video-signaling", "get-ice-server-config", "--channel-arn", created.ChannelARN, "--endpoint-url", https)
	if len(ice.IceServerList) != 1 || ice.IceServerList[0].Ttl != 300 || len(ice.IceServerList[0].Uris) < 1 || ice.IceServerList[0].Password == "" {
		t.Fatalf("ice %+v", ice)
	}

	aws.mustJSON(nil, append([]string{"kinesisvideo", "delete-signaling-channel", "--channel-arn", created.ChannelARN}, ep...)...)
	_, stderr, code := aws.run(append([]string{"kinesisvideo", "describe-signaling-channel", "--channel-name", "cli-demo"}, ep...)...)
	if code == 0 || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("describe after delete: exit %d: %s", code, stderr)
	}
	_, stderr, code = aws.run(append([]string{"kinesisvideo", "create-signaling-channel", "--channel-name", "bad name"}, ep...)...)
	if code == 0 || !strings.Contains(stderr, "InvalidArgumentException") {
		t.Fatalf("bad name: exit %d: %s", code, stderr)
	}
}

// TestAWSCLIWithTLS uses only the printed environment: the endpoint
// override variables and AWS_CA_BUNDLE for the self-signed certificate.
func TestAWSCLIWithTLS(t *testing.T) {
	t.Parallel()
	srv := start(t, emulator.Config{TLS: true, Channels: []string{"tls-demo"}, TURNDisabled: true})
	aws := newAWSCLI(t, srv)
	var list struct {
		ChannelInfoList []struct{ ChannelName, ChannelARN string }
	}
	aws.mustJSON(&list, "kinesisvideo", "list-signaling-channels", "--endpoint-url", srv.URL())
	if len(list.ChannelInfoList) != 1 || list.ChannelInfoList[0].ChannelName != "tls-demo" {
		t.Fatalf("list %+v", list)
	}
	var ice struct{ IceServerList []any }
	aws.mustJSON(&ice, "kinesis-video-signaling", "get-ice-server-config", "--channel-arn", list.ChannelInfoList[0].ChannelARN, "--endpoint-url", srv.URL())
	if ice.IceServerList == nil {
		t.Fatal("IceServerList missing")
	}
}
