package doctor_test

import (
	"context"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/doctor"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// TestSignalingEndsWhileWaitingForTheAnswer: the doctor's signaling
// connection ending while it waits for an answer is its finding
// (signaling-lost, not a renewal that hides it), and a second connection
// with the doctor's client id is named as client id reuse.
func TestSignalingEndsWhileWaitingForTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		want viewer.Cause
		act  func(t *testing.T, srv *emulator.Server, arn, id string)
	}{
		{"dropped", viewer.CauseSignalingLost, func(t *testing.T, srv *emulator.Server, _, id string) {
			if n, err := srv.Inject(emulator.Fault{Kind: emulator.FaultClose, Channel: "cam", Target: id}); err != nil || n != 1 {
				t.Errorf("close fault: %d connections, %v", n, err)
			}
		}},
		{"taken-over", viewer.CauseClientIDReuse, func(t *testing.T, srv *emulator.Server, arn, id string) {
			c := srv.Credentials()
			sig, err := signaling.Dial(context.Background(), signaling.Config{
				Endpoint: srv.WSSEndpoint(kvsproto.RoleViewer), ChannelARN: arn, Role: kvsproto.RoleViewer, ClientID: id,
				Region: srv.Region(), Credentials: signaling.StaticCredentials(c),
			})
			if err != nil {
				t.Errorf("second connection with the doctor's client id: %v", err)
				return
			}
			t.Cleanup(func() { _ = sig.Close() })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, ctl := start(t, emulator.Config{})
			ch, err := ctl.ResolveChannel(t.Context(), "cam")
			if err != nil {
				t.Fatal(err)
			}
			id := "doctor-" + tc.name
			acted := make(chan struct{})
			rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, ClientID: id, LoopbackOnly: true,
				AnswerWait: 20 * time.Second,
				OnCheck: func(c doctor.Check) {
					if c.Name == doctor.CheckSignaling && c.Status == doctor.StatusPass {
						go func() {
							defer close(acted)
							time.Sleep(300 * time.Millisecond) // the offer is out
							tc.act(t, srv, ch.ARN, id)
						}()
					}
				}})
			<-acted
			if err != nil {
				t.Fatal(err)
			}
			if rep.Verdict.Check != doctor.CheckMaster || rep.Verdict.Cause != tc.want {
				t.Fatalf("verdict %+v, want %s at %s", rep.Verdict, tc.want, doctor.CheckMaster)
			}
			if rep.Duration > 15*time.Second {
				t.Errorf("the doctor took %v: it waited for an answer on a connection that had ended", rep.Duration)
			}
		})
	}
}
