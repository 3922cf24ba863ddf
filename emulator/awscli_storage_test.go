package emulator_test

import (
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// TestAWSCLIStorage drives streams, the media storage configuration and the
// storage session joins with the real AWS CLI (aws-cli 1.45 / botocore 1.43
// has both "kinesis-video-webrtc-storage" commands), including the bad
// inputs: no storage configuration, a deleted stream, a bad client id.
func TestAWSCLIStorage(t *testing.T) {
	t.Parallel()
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"cli-cam", "cli-plain"}})
	aws := newAWSCLI(t, srv)
	c := newClient(t, srv)
	ep := []string{"--endpoint-url", srv.URL()}
	kv := func(args ...string) []string { return append(append([]string{"kinesisvideo"}, args...), ep...) }

	var created struct{ StreamARN string }
	aws.mustJSON(&created, kv("create-stream", "--stream-name", "cli-rec", "--data-retention-in-hours", "24", "--media-type", "video/h264")...)
	if !strings.Contains(created.StreamARN, ":stream/cli-rec/") {
		t.Fatalf("StreamARN %q", created.StreamARN)
	}
	var desc struct {
		StreamInfo struct {
			StreamARN, Status, Version string
			DataRetentionInHours       int
		}
	}
	aws.mustJSON(&desc, kv("describe-stream", "--stream-name", "cli-rec")...)
	if desc.StreamInfo.StreamARN != created.StreamARN || desc.StreamInfo.Status != "ACTIVE" || desc.StreamInfo.DataRetentionInHours != 24 {
		t.Fatalf("describe-stream %+v", desc)
	}
	var list struct{ StreamInfoList []struct{ StreamName string } }
	aws.mustJSON(&list, kv("list-streams")...)
	if len(list.StreamInfoList) != 1 || list.StreamInfoList[0].StreamName != "cli-rec" {
		t.Fatalf("list-streams %+v", list)
	}

	var ch struct{ ChannelInfo struct{ ChannelARN string } }
	aws.mustJSON(&ch, kv("describe-signaling-channel", "--channel-name", "cli-cam")...)
	cam := ch.ChannelInfo.ChannelARN
	aws.mustJSON(&ch, kv("describe-signaling-channel", "--channel-name", "cli-plain")...)
	plain := ch.ChannelInfo.ChannelARN

	aws.mustJSON(nil, kv("update-media-storage-configuration", "--channel-arn", cam,
		"--media-storage-configuration", "StreamARN="+created.StreamARN+",Status=ENABLED")...)
	var msc struct {
		MediaStorageConfiguration struct{ StreamARN, Status string }
	}
	aws.mustJSON(&msc, kv("describe-media-storage-configuration", "--channel-name", "cli-cam")...)
	if msc.MediaStorageConfiguration.Status != "ENABLED" || msc.MediaStorageConfiguration.StreamARN != created.StreamARN {
		t.Fatalf("describe-media-storage-configuration %+v", msc)
	}

	var eps struct {
		ResourceEndpointList []struct{ Protocol, ResourceEndpoint string }
	}
	aws.mustJSON(&eps, kv("get-signaling-channel-endpoint", "--channel-arn", cam,
		"--single-master-channel-endpoint-configuration", "Protocols=WSS,HTTPS,WEBRTC,Role=MASTER")...)
	webrtc := ""
	for _, e := range eps.ResourceEndpointList {
		if e.Protocol == "WEBRTC" {
			webrtc = e.ResourceEndpoint
		}
	}
	if webrtc == "" {
		t.Fatalf("no WEBRTC endpoint: %+v", eps)
	}
	storage := func(args ...string) (string, int) {
		_, stderr, code := aws.run(append(append([]string{"kinesis-video-webrtc-storage"}, args...), "--endpoint-url", webrtc)...)
		return stderr, code
	}
	mustFail := func(what, code string, words []string, args ...string) {
		t.Helper()
		stderr, exit := storage(args...)
		if exit == 0 || !strings.Contains(stderr, code) {
			t.Fatalf("%s: exit %d: %s (want %s)", what, exit, stderr, code)
		}
		for _, w := range words {
			if !strings.Contains(stderr, w) {
				t.Fatalf("%s: %q does not mention %q", what, stderr, w)
			}
		}
	}

	c.mustDial(kvsproto.RoleMaster, cam, "")
	c.mustDial(kvsproto.RoleViewer, cam, "cli-viewer")
	if stderr, code := storage("join-storage-session", "--channel-arn", cam); code != 0 {
		t.Fatalf("join-storage-session: exit %d: %s", code, stderr)
	}
	if stderr, code := storage("join-storage-session-as-viewer", "--channel-arn", cam, "--client-id", "cli-viewer"); code != 0 {
		t.Fatalf("join-storage-session-as-viewer: exit %d: %s", code, stderr)
	}
	if s := srv.StorageSessions(); len(s) != 1 || s[0].MasterJoins != 1 || len(s[0].Viewers) != 1 {
		t.Fatalf("StorageSessions %+v", s)
	}

	// Bad input.
	mustFail("no storage configuration", "InvalidArgumentException", []string{"not configured for media storage"},
		"join-storage-session", "--channel-arn", plain)
	mustFail("bad client id", "InvalidArgumentException", []string{"clientId"},
		"join-storage-session-as-viewer", "--channel-arn", cam, "--client-id", "AWS_reserved")
	aws.mustJSON(nil, kv("delete-stream", "--stream-arn", created.StreamARN)...)
	mustFail("deleted stream", "ResourceNotFoundException", []string{"cli-rec"},
		"join-storage-session", "--channel-arn", cam)
	_, stderr, code := aws.run(kv("update-media-storage-configuration", "--channel-arn", cam,
		"--media-storage-configuration", "StreamARN="+created.StreamARN+",Status=ENABLED")...)
	if code == 0 || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("link a deleted stream: exit %d: %s", code, stderr)
	}
}
