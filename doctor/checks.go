package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// maxSkew is the SigV4 window: clients that sign with a clock further off
// than this are refused.
const maxSkew = 5 * time.Minute

// stepTimeout bounds each control-plane call of a check.
const stepTimeout = 15 * time.Second

// isAWSHost reports whether an endpoint URL names an AWS-operated host.
func isAWSHost(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	return strings.HasSuffix(h, ".amazonaws.com") || strings.HasSuffix(h, ".amazonaws.com.cn") || strings.HasSuffix(h, ".api.aws")
}

// stsEndpoint picks the STS endpoint: Config.STSEndpoint, else the
// control-plane endpoint when it is not AWS ("" = the SDK's resolution).
func (d *run) stsEndpoint() string {
	if d.cfg.STSEndpoint != "" {
		return d.cfg.STSEndpoint
	}
	if ep := d.ctl.Kinesisvideo().Options().BaseEndpoint; ep != nil && *ep != "" && !isAWSHost(*ep) {
		return *ep
	}
	return ""
}

// offsetSigner signs with the local clock plus a measured offset, so that
// a skewed clock can be retried with the service's time.
type offsetSigner struct {
	s      *v4.Signer
	offset *atomic.Int64
}

func (o offsetSigner) SignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, t time.Time, optFns ...func(*v4.SignerOptions)) error {
	return o.s.SignHTTP(ctx, creds, r, payloadHash, service, region, t.Add(time.Duration(o.offset.Load())), optFns...)
}

// checkCredentials asks STS who the credentials belong to.
func (d *run) checkCredentials(ctx context.Context) {
	k := d.begin(CheckCredentials, "credentials: who am I (STS GetCallerIdentity)")
	creds, err := d.ctl.Credentials(ctx)
	if err != nil {
		k.fail(cause.Credentials, err, "no AWS credentials: "+err.Error(), "")
		return
	}
	k.fact("accessKeyId", redactKey(creds.AccessKeyID))
	k.fact("source", creds.Source)
	k.fact("region", d.ctl.Region())
	var offset atomic.Int64
	var date, local atomic.Value
	provider := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) { return d.ctl.Credentials(ctx) })
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	awsCfg, err := awsconfig.LoadDefaultConfig(cctx, awsconfig.WithRegion(d.ctl.Region()), awsconfig.WithCredentialsProvider(provider))
	if err != nil {
		k.fail(cause.Config, err, "loading the AWS configuration: "+err.Error(), "")
		return
	}
	ep := d.stsEndpoint()
	var sent atomic.Value // the endpoint the request went to (scheme://host)
	client := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		if ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
		o.Credentials = provider
		o.HTTPSignerV4 = offsetSigner{s: v4.NewSigner(), offset: &offset}
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("kvsrtcDoctorEndpoint",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if req, ok := in.Request.(*smithyhttp.Request); ok && req.URL != nil {
						sent.Store(req.URL.Scheme + "://" + req.URL.Host)
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		}, func(st *middleware.Stack) error {
			return st.Deserialize.Add(middleware.DeserializeMiddlewareFunc("kvsrtcDoctorDate",
				func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleDeserialize(ctx, in)
					if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp != nil {
						if t, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
							date.Store(t)
							local.Store(time.Now())
						}
					}
					return out, md, err
				}), middleware.After)
		})
	})
	call := func() (*sts.GetCallerIdentityOutput, error) {
		return client.GetCallerIdentity(cctx, &sts.GetCallerIdentityInput{})
	}
	out, err := call()
	// The endpoint the request really went to: AWS_ENDPOINT_URL_STS (or
	// the profile's services section) may have sent it elsewhere than the
	// regional AWS endpoint.
	stsEP, _ := sent.Load().(string)
	if stsEP == "" {
		stsEP = ep
	}
	if stsEP == "" {
		if b := client.Options().BaseEndpoint; b != nil && *b != "" {
			stsEP = *b
		}
	}
	switch {
	case stsEP == "":
		k.fact("endpoint", "AWS STS ("+d.ctl.Region()+")")
	case isAWSHost(stsEP):
		k.fact("endpoint", stsEP+" (AWS STS)")
	default:
		k.fact("endpoint", stsEP)
	}
	var ae smithy.APIError
	skewed := false
	if err != nil && errors.As(err, &ae) && cause.SkewMessage(ae.ErrorMessage()) {
		// The clock is off: ask again with the service's time (as kvsrtc's
		// clients do) so that the credentials themselves get checked.
		if t, ok := date.Load().(time.Time); ok {
			offset.Store(int64(t.Sub(local.Load().(time.Time))))
			skewed = true
			out, err = call()
		}
	}
	if t, ok := date.Load().(time.Time); ok {
		d.stsDate, d.stsLocal = t, local.Load().(time.Time)
	}
	if err != nil {
		if errors.As(err, &ae) {
			k.fact("errorCode", ae.ErrorCode())
			if cause.SkewMessage(ae.ErrorMessage()) {
				k.fail(cause.ClockSkew, err, "the service refused the signing time: "+ae.ErrorMessage(), "")
				return
			}
			advice := "the access key, secret key (or session token) are wrong, revoked or expired: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) or AWS_PROFILE to a working identity"
			if strings.Contains(strings.ToLower(ae.ErrorMessage()), "region") {
				advice = "the request was signed for the wrong region: set AWS_REGION (--region) to the channel's region"
			}
			k.fail(cause.Credentials, err, fmt.Sprintf("STS refused the credentials: %s: %s", ae.ErrorCode(), ae.ErrorMessage()), advice)
			return
		}
		// The local emulator answers STS on the control-plane endpoint:
		// then an unreachable STS is an unreachable service.
		service := "STS"
		if stsEP != "" && stsEP == d.controlEndpoint() {
			service = "KVS control plane"
		}
		if ue := control.Unreachable(err, service, "GetCallerIdentity", stsEP); ue != nil {
			d.markDown(ue)
			k.fact("failed", string(ue.Failure))
			if ue.Proxy != "" {
				k.fact("proxy", ue.Proxy)
			}
			k.fail(cause.Unreachable, ue, ue.Error(), ue.Advice())
			return
		}
		k.fail(cause.Config, err, "could not reach STS: "+err.Error(),
			"check the network, or point --sts-endpoint (AWS_ENDPOINT_URL_STS) at a reachable STS endpoint")
		return
	}
	k.fact("account", aws.ToString(out.Account))
	k.fact("arn", aws.ToString(out.Arn))
	k.fact("userId", aws.ToString(out.UserId))
	note := ""
	if skewed {
		note = "valid once signed with the service's time (see the clock check)"
	}
	k.pass(note)
}

// redactKey keeps the first 4 and last 4 characters of an access key id.
func redactKey(id string) string {
	if len(id) <= 8 {
		return strings.Repeat("*", len(id))
	}
	return id[:4] + strings.Repeat("*", len(id)-8) + id[len(id)-4:]
}

// checkClock measures the offset between the local and the service clock.
func (d *run) checkClock(ctx context.Context) {
	k := d.begin(CheckClock, "clock: offset from the service's clock")
	var offset time.Duration
	switch {
	case !d.stsDate.IsZero():
		offset = d.stsDate.Sub(d.stsLocal)
		k.fact("source", "Date header of the STS answer")
	case d.controlDown() != nil:
		k.skip("needs an answer of " + d.controlDown().Endpoint + ", which is unreachable (see the credentials check)")
		return
	default:
		// Measure with a control-plane call (its answer carries the Date).
		cctx, cancel := context.WithTimeout(ctx, stepTimeout)
		_, err := d.ctl.Kinesisvideo().ListSignalingChannels(cctx, &kinesisvideo.ListSignalingChannelsInput{MaxResults: aws.Int32(1)})
		cancel()
		offset = d.ctl.ClockOffset()
		k.fact("source", "Date header of a control-plane answer")
		if err != nil && offset == 0 {
			k.skip("no answer from the service to measure with: " + err.Error())
			return
		}
	}
	k.fact("offset", offset.Round(time.Millisecond).String())
	k.fact("serviceTime", time.Now().Add(offset).UTC().Format(time.RFC3339))
	k.fact("localTime", time.Now().UTC().Format(time.RFC3339))
	// The Date header has a resolution of one second, and the round trip
	// adds to it.
	switch abs := offset.Abs(); {
	case abs >= maxSkew:
		k.fail(cause.ClockSkew, nil,
			fmt.Sprintf("this machine's clock is %v off the service's; requests signed with it are refused (kvsrtc measures and corrects the offset itself, other clients do not)", offset.Round(time.Second)), "")
	case abs > 30*time.Second:
		k.pass(fmt.Sprintf("the clock is %v off: within the 5-minute signing window, but fix it (NTP) before it drifts further", offset.Round(time.Second)))
	default:
		k.pass("")
	}
}

// controlEndpoint returns the control-plane endpoint override ("" for
// AWS's).
func (d *run) controlEndpoint() string {
	if ep := d.ctl.Kinesisvideo().Options().BaseEndpoint; ep != nil {
		return strings.TrimRight(*ep, "/")
	}
	return ""
}

// markDown remembers an endpoint that did not answer, so that later checks
// do not wait for it again.
func (d *run) markDown(ue *control.UnreachableError) {
	if d.down == nil {
		d.down = map[string]*control.UnreachableError{}
	}
	d.down[ue.Endpoint] = ue
}

// controlDown returns the failure of the control-plane endpoint if an
// earlier check found it unreachable.
func (d *run) controlDown() *control.UnreachableError {
	if ep := d.controlEndpoint(); ep != "" {
		return d.down[ep]
	}
	return nil
}

// failUnreachable records err as an unreachable service, with its own
// advice, and reports whether it was one.
func failUnreachable(k *checker, err error) bool {
	var ue *control.UnreachableError
	if !errors.As(err, &ue) {
		return false
	}
	if !k.has("endpoint") {
		k.fact("endpoint", ue.Endpoint)
	}
	k.fact("failed", string(ue.Failure))
	if ue.Proxy != "" {
		k.fact("proxy", ue.Proxy)
	}
	k.fail(cause.Unreachable, err, ue.Error(), ue.Advice())
	return true
}

// classify maps a control-plane or signaling error to a cause: package
// cause's one classification (whether retrying helps does not matter to a
// one-shot check).
func classify(err error) cause.Cause {
	c, _ := cause.Classify(err)
	return c
}

// checkChannel resolves the channel; when it does not exist, it lists the
// channels that do.
func (d *run) checkChannel(ctx context.Context) {
	k := d.begin(CheckChannel, "channel: exists and is ACTIVE")
	if ue := d.controlDown(); ue != nil {
		k.skip("needs an answer of " + ue.Endpoint + ", which is unreachable (see the credentials check)")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	ch, err := d.ctl.ResolveChannel(cctx, d.cfg.Channel)
	if ch.ARN != "" {
		k.fact("arn", ch.ARN)
		k.fact("status", string(ch.Status))
	}
	if err != nil {
		var ue *control.UnreachableError
		if errors.As(err, &ue) {
			d.markDown(ue)
		}
		c := classify(err)
		switch {
		case failUnreachable(k, err):
		case errors.Is(err, control.ErrChannelDeleting):
			k.fail(c, err, fmt.Sprintf("channel %s is being deleted", d.cfg.Channel),
				"the channel is being deleted: wait for the deletion to finish and create it again, or use another channel")
		case errors.Is(err, control.ErrChannelNotFound):
			d.listChannels(cctx, k)
			k.fail(c, err, fmt.Sprintf("no channel %q in account and region %s", d.cfg.Channel, d.ctl.Region()),
				"check the channel name or ARN and the region (AWS_REGION / --region): the existing channels are listed in the evidence")
		case errors.Is(err, control.ErrInvalidArgument) && strings.Contains(err.Error(), "region"):
			k.fail(cause.Credentials, err, "", "the channel ARN names another region: set AWS_REGION (--region) to the ARN's region")
		default:
			k.fail(c, err, "", "")
		}
		return
	}
	d.channel, d.haveCh = ch, true
	d.rep.ChannelARN = ch.ARN
	k.fact("name", ch.Name)
	k.fact("type", string(ch.Type))
	if ch.MessageTTL > 0 {
		k.fact("messageTtl", ch.MessageTTL.String())
	}
	if !ch.CreationTime.IsZero() {
		k.fact("created", ch.CreationTime.UTC().Format(time.RFC3339))
	}
	if ch.Status != kvsproto.StatusActive {
		k.fail(cause.ChannelNotFound, nil, fmt.Sprintf("the channel is %s, not ACTIVE", ch.Status),
			"wait until the channel is ACTIVE (aws kinesisvideo describe-signaling-channel)")
		d.haveCh = false
		return
	}
	k.pass(d.mediaStorage(cctx, k, ch.ARN))
}

// mediaStorage adds the channel's media storage configuration (WebRTC
// ingestion) to k and returns a note when it is enabled: the camera then
// sends its media to a KVS storage session, and viewers normally watch
// through that session (JoinStorageSessionAsViewer), which this doctor's
// and kvsrtc view's peer-to-peer offer does not test.
func (d *run) mediaStorage(ctx context.Context, k *checker, arn string) string {
	out, err := d.ctl.Kinesisvideo().DescribeMediaStorageConfiguration(ctx, &kinesisvideo.DescribeMediaStorageConfigurationInput{ChannelARN: aws.String(arn)})
	if err != nil {
		k.fact("mediaStorage", "could not read: "+err.Error())
		return ""
	}
	msc := out.MediaStorageConfiguration
	if msc == nil || msc.Status != types.MediaStorageConfigurationStatusEnabled {
		k.fact("mediaStorage", "DISABLED")
		return ""
	}
	stream := aws.ToString(msc.StreamARN)
	k.fact("mediaStorage", "ENABLED")
	k.fact("mediaStorageStream", stream)
	d.storageOn = true
	return fmt.Sprintf("WebRTC ingestion is enabled (stream %s): the camera sends its media to a KVS storage session, "+
		"and viewers normally watch through it (JoinStorageSessionAsViewer, Multiviewer); the storage check tests that "+
		"path, the other checks the peer-to-peer one", stream)
}

// listChannels adds up to ten channel names of the region to k.
func (d *run) listChannels(ctx context.Context, k *checker) {
	out, err := d.ctl.Kinesisvideo().ListSignalingChannels(ctx, &kinesisvideo.ListSignalingChannelsInput{MaxResults: aws.Int32(10)})
	if err != nil {
		k.fact("existingChannels", "could not list: "+err.Error())
		return
	}
	names := make([]string, 0, len(out.ChannelInfoList))
	for _, ci := range out.ChannelInfoList {
		names = append(names, aws.ToString(ci.ChannelName))
	}
	if out.NextToken != nil {
		names = append(names, "...")
	}
	k.fact("existingChannels", names)
}

// checkEndpoints gets the VIEWER endpoints.
func (d *run) checkEndpoints(ctx context.Context) {
	k := d.begin(CheckEndpoints, "endpoints: VIEWER signaling endpoints")
	if !d.haveCh {
		k.skip("needs the channel")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	ep, err := d.ctl.Endpoints(cctx, d.channel.ARN, kvsproto.RoleViewer)
	if err != nil {
		if !failUnreachable(k, err) {
			k.fail(classify(err), err, "", "")
		}
		return
	}
	d.endpoints, d.haveEP = ep, true
	k.fact("wss", ep.WSS)
	k.fact("https", ep.HTTPS)
	k.pass("")
}

// checkICEServers fetches the ICE server configuration.
func (d *run) checkICEServers(ctx context.Context) {
	k := d.begin(CheckICEServers, "ice-servers: GetIceServerConfig")
	if !d.haveEP {
		k.skip("needs the endpoints")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	ice, err := d.ctl.ICEServers(cctx, d.channel.ARN, d.endpoints.HTTPS, "")
	if err != nil {
		if !failUnreachable(k, err) {
			k.fail(classify(err), err, "", "")
		}
		return
	}
	d.ice, d.haveICE = ice, true
	turns, uris := 0, 0
	var stun []string
	for _, s := range ice.Servers {
		if s.Username != "" || s.Credential != "" {
			turns++
			uris += len(s.URLs)
		} else {
			stun = append(stun, s.URLs...)
		}
	}
	k.fact("turnServers", turns)
	k.fact("turnUris", uris)
	if len(stun) > 0 {
		k.fact("stun", stun)
	}
	k.fact("ttl", ice.TTL.String())
	k.fact("expires", ice.Expires.UTC().Format(time.RFC3339))
	if turns == 0 {
		k.pass("no TURN servers: only direct (host/srflx) paths are possible")
		return
	}
	k.pass(fmt.Sprintf("the credentials expire after %v: an app must fetch them again before then (expired ones are refused by TURN)", ice.TTL))
}
