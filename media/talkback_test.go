package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

func TestOpusStream(t *testing.T) {
	src, err := NewOpusStream(bytes.NewReader(testsrc.OpusOgg()), SourceConfig{Unpaced: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	n := 0
	for {
		s, err := src.ReadSample(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s.Duration <= 0 || len(s.Data) == 0 {
			t.Fatalf("sample %d: %d bytes, duration %v", n, len(s.Data), s.Duration)
		}
		n++
	}
	if n < 50 {
		t.Fatalf("%d packets from the test tone", n)
	}
}

func TestOpusStreamRejectsOtherInput(t *testing.T) {
	src, err := NewOpusStream(bytes.NewReader(testsrc.H264()), SourceConfig{Unpaced: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.ReadSample(context.Background())
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("H.264 on an Opus stream: %v", err)
	}
}

func TestCheckTalkback(t *testing.T) {
	v, err := NewTestSource(rtc.CodecH264, SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := CheckTalkback(v, "x.h264"); !errors.Is(err, ErrNotOpus) || !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("CheckTalkback(H.264) = %v", err)
	}
	a, err := NewTestSource(rtc.CodecOpus, SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := CheckTalkback(a, "tone"); err != nil {
		t.Fatal(err)
	}
}
