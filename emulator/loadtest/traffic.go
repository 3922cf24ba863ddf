package loadtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

func (r *runner) connect(ctx context.Context, p *peer) error {
	params := map[string]string{"X-Amz-ChannelARN": p.ch.arn}
	ep := p.ch.masterEP
	if !p.master {
		params["X-Amz-ClientId"] = p.clientID
		ep = p.ch.viewEP
	}
	u, err := sigv4.PresignURL(ep, params, r.cfg.Credentials, r.cfg.Region, time.Now(), 0)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: r.wsClient})
	if resp != nil && resp.Body != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return fmt.Errorf("connect %s: HTTP %d: %w", p.ch.name, resp.StatusCode, err)
		}
		return err
	}
	ws.SetReadLimit(64 << 10)
	p.ws = ws
	if p.master {
		p.ch.masterUp.Store(true)
	}
	r.wg.Add(1)
	go r.read(p)
	return nil
}

// read is a peer's receive loop: it records latencies and, for masters,
// echoes every viewer message back to its sender.
func (r *runner) read(p *peer) {
	defer r.wg.Done()
	for {
		_, b, err := p.ws.Read(context.Background())
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		typ := field(b, `"messageType":"`)
		if string(typ) != string(kvsproto.MessageICECandidate) {
			p.other++
			continue
		}
		t, ok := payloadTime(field(b, `"messagePayload":"`))
		if !ok {
			p.other++
			continue
		}
		if r.recording.Load() {
			p.samples = append(p.samples, now-t)
			p.seconds = append(p.seconds, uint16((now-r.sendStart.Load())/int64(time.Second)))
			atomic.AddUint64(&p.received, 1)
		}
		if sender := field(b, `"senderClientId":"`); p.master && len(sender) > 0 && r.echo.Load() {
			if p.ws.Write(context.Background(), websocket.MessageText, r.frame(string(sender))) == nil {
				r.sent.Add(1)
			}
		}
	}
}

// field returns the value of a string member of a flat JSON object (the
// service's event frames), without unescaping; nil if absent.
func field(b []byte, key string) []byte {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// frame builds an ICE_CANDIDATE message stamped with the current time. The
// timestamp leads the payload JSON so that the receiver decodes only the
// first 32 base64 characters.
func (r *runner) frame(recipient string) []byte {
	now := time.Now().UnixNano()
	body := `{"t":` + fmt.Sprintf("%019d", now) + `,"candidate":"candidate:842163049 1 udp 1677729535 127.0.0.1 ` +
		strconv.Itoa(int(now%50000)+10000) + ` typ host generation 0","sdpMid":"0","sdpMLineIndex":0,"pad":"` + r.pad + `"}`
	b := make([]byte, 0, base64.StdEncoding.EncodedLen(len(body))+len(recipient)+80)
	b = append(b, `{"action":"ICE_CANDIDATE","messagePayload":"`...)
	b = base64.StdEncoding.AppendEncode(b, []byte(body))
	b = append(b, '"')
	if recipient != "" {
		b = append(b, `,"recipientClientId":"`...)
		b = append(b, recipient...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// payloadTime extracts the send time from the first 24 bytes of the
// payload JSON: {"t":<19 digits>.
func payloadTime(p []byte) (int64, bool) {
	if len(p) < 32 {
		return 0, false
	}
	var raw [24]byte
	if n, err := base64.StdEncoding.Decode(raw[:], p[:32]); err != nil || n != 24 || string(raw[:5]) != `{"t":` {
		return 0, false
	}
	t, err := strconv.ParseInt(string(raw[5:]), 10, 64)
	return t, err == nil
}

// send paces viewer messages at cfg.Rate for cfg.Duration, spread over a
// few sender goroutines, each catching up when it falls behind.
func (r *runner) send(ctx context.Context, viewers []*peer) {
	if len(viewers) == 0 {
		sleep(ctx, r.cfg.Duration)
		return
	}
	shards := max(1, min(runtime.GOMAXPROCS(0)*2, len(viewers)))
	rate := r.cfg.Rate / float64(shards)
	start := time.Now()
	end := start.Add(r.cfg.Duration)
	var wg sync.WaitGroup
	for s := 0; s < shards; s++ {
		var mine []*peer
		for i := s; i < len(viewers); i += shards {
			mine = append(mine, viewers[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, next := 0, 0
			for {
				now := time.Now()
				if now.After(end) || ctx.Err() != nil {
					return
				}
				due := int(now.Sub(start).Seconds() * rate)
				for ; sent < due; sent++ {
					p := mine[next]
					next = (next + 1) % len(mine)
					if p.ws.Write(ctx, websocket.MessageText, r.frame("")) == nil {
						r.sent.Add(1)
					}
				}
				sleep(ctx, 2*time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

func (r *runner) closeAll(peers []*peer) {
	for _, p := range peers {
		if p.ws != nil {
			_ = p.ws.CloseNow()
		}
	}
	r.wg.Wait()
}
