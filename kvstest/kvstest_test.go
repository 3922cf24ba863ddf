package kvstest_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
)

func TestTLSAndEnviron(t *testing.T) {
	kvstest.IsolateEnv(t)
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{TLS: true, TURNDisabled: true, Channels: []string{"cam"}}})
	if !strings.HasPrefix(env.Server.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", env.Server.URL())
	}
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	out, err := kv.ListSignalingChannels(t.Context(), &kinesisvideo.ListSignalingChannelsInput{})
	if err != nil || len(out.ChannelInfoList) != 1 || aws.ToString(out.ChannelInfoList[0].ChannelName) != "cam" {
		t.Fatalf("list over TLS: %+v %v", out, err)
	}
	if arn := env.ChannelARN(t, "cam"); !strings.Contains(arn, ":channel/cam/") {
		t.Fatalf("ARN %q", arn)
	}
	environ := env.Environ()
	for _, want := range []string{
		"AWS_ENDPOINT_URL_KINESIS_VIDEO=" + env.Server.URL(),
		"AWS_REGION=" + env.Server.Region(),
		"AWS_CA_BUNDLE=" + env.Server.CACertFile(),
	} {
		if !slices.Contains(environ, want) {
			t.Errorf("Environ() = %q lacks %q", environ, want)
		}
	}
}

func TestMaster(t *testing.T) {
	var (
		mu     sync.Mutex
		events []master.EventKind
	)
	env := kvstest.New(t, kvstest.Options{Master: &kvstest.MasterOptions{
		Channel: "cam",
		Audio:   true,
		Configure: func(c *master.Config) {
			c.OnEvent = func(ev master.Event) {
				mu.Lock()
				events = append(events, ev.Kind)
				mu.Unlock()
			}
		},
	}})
	m := env.Master
	if m == nil || m.Channel != "cam" || env.ChannelARN(t, "cam") == "" {
		t.Fatalf("master %+v", m)
	}
	mu.Lock()
	ready := slices.Contains(events, master.EventReady)
	mu.Unlock()
	if !ready {
		t.Fatal("the Configure's OnEvent did not see EventReady")
	}
	select {
	case <-m.Done():
		t.Fatalf("master ended: %v", m.Stop())
	default:
	}
	if err := m.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := m.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	// A second master, on a channel that does not exist, fails clearly.
	_, err := kvstest.Start(kvstest.Options{Master: &kvstest.MasterOptions{}})
	if !errors.Is(err, master.ErrInvalidConfig) || !strings.Contains(err.Error(), "MasterOptions.Channel") {
		t.Fatalf("empty channel: %v", err)
	}
}

func TestSetenv(t *testing.T) {
	env := kvstest.New(t, kvstest.Options{Emulator: emulator.Config{TURNDisabled: true, Channels: []string{"cam"}}})
	t.Setenv("AWS_PROFILE", "no-such-profile")
	env.Setenv(t)
	if os.Getenv("AWS_PROFILE") != "" || os.Getenv("AWS_ENDPOINT_URL_KINESIS_VIDEO") != env.Server.URL() {
		t.Fatalf("AWS_PROFILE %q, AWS_ENDPOINT_URL_KINESIS_VIDEO %q", os.Getenv("AWS_PROFILE"), os.Getenv("AWS_ENDPOINT_URL_KINESIS_VIDEO"))
	}
	// Code that loads the default configuration reaches the service.
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out, err := kinesisvideo.NewFromConfig(cfg).ListSignalingChannels(t.Context(), &kinesisvideo.ListSignalingChannelsInput{})
	if err != nil || len(out.ChannelInfoList) != 1 {
		t.Fatalf("list from the environment: %+v %v", out, err)
	}
}
