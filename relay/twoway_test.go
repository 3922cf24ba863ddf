package relay

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/media"
)

// TestTalkSource: the upstream session's talk-back source blocks while
// nobody talks (silence does not end the session's talk-back), returns
// what is pushed, and ends with ctx or Close.
func TestTalkSource(t *testing.T) {
	s := newTalkSource()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.ReadSample(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadSample with nobody talking: %v, want it to wait until ctx ends", err)
	}
	want := media.Sample{Sample: pmedia.Sample{Data: []byte{0xf8, 1, 2, 3}, Duration: 20 * time.Millisecond}, Keyframe: true}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.push(want)
	}()
	got, err := s.ReadSample(context.Background())
	if err != nil || string(got.Data) != string(want.Data) || got.Duration != want.Duration || !got.Keyframe {
		t.Fatalf("ReadSample: %+v, %v; want %+v", got, err, want)
	}
	for range talkQueue {
		if !s.push(want) {
			t.Fatal("push refused before the queue was full")
		}
	}
	if s.push(want) {
		t.Fatal("push took a sample over the queue's bound")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if s.push(want) {
		t.Fatal("push after Close")
	}
	for {
		if _, err := s.ReadSample(context.Background()); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("ReadSample after Close: %v, want io.EOF", err)
			}
			break
		}
	}
}
