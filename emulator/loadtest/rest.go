package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// call makes one signed REST call and decodes the JSON answer into out.
func (r *runner) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := sigv4.SignRequest(req, body, r.cfg.Credentials, r.cfg.Region, time.Now()); err != nil {
		return err
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d %s: %s", path, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func (r *runner) createChannels(ctx context.Context) ([]*channelState, error) {
	chans := make([]*channelState, r.cfg.Channels)
	var firstErr error
	var mu sync.Mutex
	r.parallel(len(chans), func(i int) {
		ch := &channelState{name: fmt.Sprintf("%s-%05d", r.cfg.ChannelPrefix, i)}
		err := func() error {
			var out kvsproto.CreateSignalingChannelOutput
			if err := r.call(ctx, kvsproto.PathCreateSignalingChannel, kvsproto.CreateSignalingChannelInput{ChannelName: ch.name}, &out); err != nil {
				return err
			}
			ch.arn = out.ChannelARN
			for _, role := range []kvsproto.Role{kvsproto.RoleMaster, kvsproto.RoleViewer} {
				var ep kvsproto.GetSignalingChannelEndpointOutput
				in := kvsproto.GetSignalingChannelEndpointInput{ChannelARN: ch.arn, SingleMasterChannelEndpointConfiguration: &kvsproto.SingleMasterChannelEndpointConfiguration{
					Protocols: []string{"WSS", "HTTPS"}, Role: string(role)}}
				if err := r.call(ctx, kvsproto.PathGetSignalingChannelEndpoint, in, &ep); err != nil {
					return err
				}
				for _, e := range ep.ResourceEndpointList {
					if e.Protocol == kvsproto.ProtocolWSS {
						if role == kvsproto.RoleMaster {
							ch.masterEP = e.ResourceEndpoint
						} else {
							ch.viewEP = e.ResourceEndpoint
						}
					}
				}
			}
			if ch.masterEP == "" || ch.viewEP == "" {
				return fmt.Errorf("channel %s: no WSS endpoint returned", ch.name)
			}
			return nil
		}()
		mu.Lock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if err == nil {
			chans[i] = ch
		}
		mu.Unlock()
	})
	ok := chans[:0]
	for _, c := range chans {
		if c != nil {
			ok = append(ok, c)
		}
	}
	if firstErr != nil {
		return ok, fmt.Errorf("loadtest: creating channels: %w", firstErr)
	}
	return ok, nil
}

func (r *runner) deleteChannels(chans []*channelState) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.parallel(len(chans), func(i int) {
		_ = r.call(ctx, kvsproto.PathDeleteSignalingChannel, kvsproto.DeleteSignalingChannelInput{ChannelARN: chans[i].arn}, nil)
	})
	r.cfg.HTTPClient.CloseIdleConnections()
}

// serverStats fetches GET /_kvsrtc/stats; nil if the service has none.
func (r *runner) serverStats(ctx context.Context) *ServerStats {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.Endpoint+"/_kvsrtc/stats", nil)
	if err != nil {
		return nil
	}
	if r.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var st ServerStats
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return &st
}
