package hub

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// countConn is a Conn that only counts frames.
type countConn struct{ n atomic.Int64 }

func (c *countConn) Send([]byte) error       { c.n.Add(1); return nil }
func (c *countConn) Close(int, string, bool) {}

// BenchmarkRoute measures one round trip through the hub: a viewer's ICE
// candidate to the master and the master's candidate back to the viewer,
// in parallel over many channels. One op = two routed frames.
func BenchmarkRoute(b *testing.B) {
	const channels = 256
	h := New(Config{DisableQuotas: true})
	defer h.Close()
	type pair struct{ master, viewer *Member }
	pairs := make([]pair, channels)
	for i := range pairs {
		arn := fmt.Sprintf("arn:aws:kinesisvideo:us-west-2:123456789012:channel/bench-%d/1700000000000", i)
		m, err := h.Join(JoinRequest{ChannelARN: arn, Role: kvsproto.RoleMaster, Conn: &countConn{}})
		if err != nil {
			b.Fatal(err)
		}
		v, err := h.Join(JoinRequest{ChannelARN: arn, Role: kvsproto.RoleViewer, ClientID: "viewer-1", Conn: &countConn{}})
		if err != nil {
			b.Fatal(err)
		}
		pairs[i] = pair{m, v}
	}
	up := msg(kvsproto.ActionICECandidate, iceP, "", "")
	down := msg(kvsproto.ActionICECandidate, iceP, "viewer-1", "")
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 31
		for pb.Next() {
			p := pairs[i%channels]
			i++
			p.viewer.Handle(up)
			p.master.Handle(down)
		}
	})
	b.StopTimer()
	if s := h.Stats(); s.Routed != uint64(2*b.N) {
		b.Fatalf("routed %d of %d", s.Routed, 2*b.N)
	}
}

// BenchmarkJoinLeave measures a viewer joining and leaving, in parallel over
// many channels that each keep a master.
func BenchmarkJoinLeave(b *testing.B) {
	const channels = 256
	h := New(Config{DisableQuotas: true})
	defer h.Close()
	arns := make([]string, channels)
	for i := range arns {
		arns[i] = fmt.Sprintf("arn:aws:kinesisvideo:us-west-2:123456789012:channel/bench-%d/1700000000000", i)
		if _, err := h.Join(JoinRequest{ChannelARN: arns[i], Role: kvsproto.RoleMaster, Conn: &countConn{}}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		id := fmt.Sprint("viewer-", g)
		c := &countConn{}
		i := int(g) * 31
		for pb.Next() {
			m, err := h.Join(JoinRequest{ChannelARN: arns[i%channels], Role: kvsproto.RoleViewer, ClientID: id, Conn: c})
			if err != nil {
				b.Error(err)
				return
			}
			m.Leave()
			i++
		}
	})
}
