package retry

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func TestBackoff(t *testing.T) {
	p := Policy{BackoffBase: 100 * time.Millisecond, BackoffCap: time.Second, NoJitter: true}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.Backoff(i+1, nil); got != w*time.Millisecond {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	p.NoJitter = false
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n < 10; n++ {
		for range 100 {
			d := p.Backoff(n, r)
			if d < 0 || d >= time.Second {
				t.Fatalf("jittered backoff %v out of [0, cap)", d)
			}
		}
	}
	seed := Seed()
	if seed.AnswerTimeout != 15*time.Second || seed.MaxAttempts != 2 || seed.Backoff(1, nil) != 4*time.Second {
		t.Fatalf("seed policy = %+v", seed)
	}
}

func TestPolicyDefaults(t *testing.T) {
	p, err := Policy{}.WithDefaults()
	if err != nil || p != Default() {
		t.Fatalf("withDefaults = %+v, %v; want Default %+v", p, err, Default())
	}
	if p, _ := Seed().WithDefaults(); p != Seed() {
		t.Fatalf("the seed policy changes under withDefaults: %+v", p)
	}
	for _, bad := range []Policy{
		{AnswerTimeout: -1},
		{MaxAttempts: -2},
		{BackoffBase: time.Second, BackoffCap: time.Millisecond},
	} {
		if _, err := bad.WithDefaults(); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("withDefaults(%+v) = %v, want ErrInvalidPolicy", bad, err)
		}
	}
}

func TestClientIDs(t *testing.T) {
	now := time.Unix(1700000000, 0)
	ids := &ClientIDs{Prefix: "cam-lobby-", Now: func() time.Time { return now }}
	seen := map[string]bool{}
	for range 1000 {
		id, err := ids.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(id, "cam-lobby-") || kvsproto.ValidateClientID(id) != nil || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if err := ids.Use("fixed-1"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Second)
	if err := ids.Use("fixed-1"); !errors.Is(err, ErrClientIDReused) {
		t.Fatalf("reuse after 30 s: %v", err)
	}
	now = now.Add(31 * time.Second)
	if err := ids.Use("fixed-1"); err != nil {
		t.Fatalf("reuse after 61 s: %v", err)
	}
	if err := ids.Use("AWS_x"); !errors.Is(err, kvsproto.ErrInvalid) {
		t.Fatalf("AWS_ id: %v", err)
	}
	bad := &ClientIDs{Prefix: "has space"}
	if _, err := bad.Next(); !errors.Is(err, kvsproto.ErrInvalid) || !strings.Contains(err.Error(), "' '") {
		t.Fatalf("bad prefix: %v", err)
	}
	long := &ClientIDs{Prefix: strings.Repeat("a", 250)}
	if _, err := long.Next(); err == nil {
		t.Fatal("too long prefix accepted")
	}
}

func TestThrottledBackoffGrows(t *testing.T) {
	p := Default()
	r := rand.New(rand.NewPCG(3, 4))
	for n, lo := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		for range 50 {
			if d := p.Throttled(n+1, r); d < lo || d >= 2*lo {
				t.Fatalf("Throttled(%d) = %v, want in [%v, %v)", n+1, d, lo, 2*lo)
			}
		}
	}
	p.NoJitter = true
	if d := p.Throttled(2, nil); d != time.Second {
		t.Fatalf("without jitter: %v", d)
	}
}

func TestLingers(t *testing.T) {
	if extra, ok := Default().Lingers(); !ok || extra != DefaultLateAnswerWindow-Default().AnswerTimeout {
		t.Fatalf("default policy: lingers %v, %v", extra, ok)
	}
	for _, p := range []Policy{Seed(), {AnswerTimeout: 3 * time.Second, LateAnswerWindow: 3 * time.Second}} {
		if _, ok := p.Lingers(); ok {
			t.Errorf("%+v lingers", p)
		}
	}
}
