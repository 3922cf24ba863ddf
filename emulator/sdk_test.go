package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"

	"github.com/kvsrtc/kvsrtc/emulator"
)

// sdkClient returns a real aws-sdk-go-v2 kinesisvideo client pointed at srv.
func sdkClient(t *testing.T, srv *emulator.Server) *kinesisvideo.Client {
	tr := &http.Transport{}
	if pool := srv.CertPool(); pool != nil {
		tr.TLSClientConfig = tlsConfig(pool)
	}
	t.Cleanup(tr.CloseIdleConnections)
	cr := srv.Credentials()
	return kinesisvideo.New(kinesisvideo.Options{
		Region:           srv.Region(),
		BaseEndpoint:     aws.String(srv.URL()),
		Credentials:      credentials.NewStaticCredentialsProvider(cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken),
		HTTPClient:       &http.Client{Transport: tr},
		RetryMaxAttempts: 1,
	})
}

func TestAWSSDKGoV2(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := "http"
		if tlsOn {
			name = "https"
		}
		t.Run(name, func(t *testing.T) { testSDK(t, tlsOn) })
	}
}

func testSDK(t *testing.T, tlsOn bool) {
	srv := start(t, emulator.Config{TLS: tlsOn, TURNDisabled: true, Faults: []string{"throttle-api,target=ListTagsForResource"}})
	kv := sdkClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	created, err := kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{
		ChannelName:               aws.String("sdk-channel"),
		ChannelType:               types.ChannelTypeSingleMaster,
		SingleMasterConfiguration: &types.SingleMasterConfiguration{MessageTtlSeconds: aws.Int32(45)},
		Tags:                      []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}},
	})
	if err != nil {
		t.Fatalf("CreateSignalingChannel: %v", err)
	}
	arn := aws.ToString(created.ChannelARN)

	desc, err := kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelName: aws.String("sdk-channel")})
	if err != nil {
		t.Fatalf("DescribeSignalingChannel: %v", err)
	}
	ci := desc.ChannelInfo
	if aws.ToString(ci.ChannelARN) != arn || ci.ChannelStatus != types.StatusActive || ci.CreationTime == nil ||
		time.Since(*ci.CreationTime).Abs() > time.Minute || aws.ToInt32(ci.SingleMasterConfiguration.MessageTtlSeconds) != 45 {
		t.Fatalf("ChannelInfo %+v", ci)
	}
	if _, err := kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelARN: aws.String(arn)}); err != nil {
		t.Fatalf("describe by ARN: %v", err)
	}

	for i := 0; i < 3; i++ {
		if _, err := kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{ChannelName: aws.String("page-" + string(rune('a'+i)))}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	pager := kinesisvideo.NewListSignalingChannelsPaginator(kv, &kinesisvideo.ListSignalingChannelsInput{
		MaxResults:           aws.Int32(2),
		ChannelNameCondition: &types.ChannelNameCondition{ComparisonOperator: types.ComparisonOperatorBeginsWith, ComparisonValue: aws.String("page-")},
	})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListSignalingChannels: %v", err)
		}
		for _, c := range page.ChannelInfoList {
			names = append(names, aws.ToString(c.ChannelName))
		}
	}
	if strings.Join(names, ",") != "page-a,page-b,page-c" {
		t.Fatalf("paginated names %v", names)
	}

	if _, err := kv.UpdateSignalingChannel(ctx, &kinesisvideo.UpdateSignalingChannelInput{
		ChannelARN: aws.String(arn), CurrentVersion: ci.Version,
		SingleMasterConfiguration: &types.SingleMasterConfiguration{MessageTtlSeconds: aws.Int32(120)},
	}); err != nil {
		t.Fatalf("UpdateSignalingChannel: %v", err)
	}
	_, err = kv.UpdateSignalingChannel(ctx, &kinesisvideo.UpdateSignalingChannelInput{ChannelARN: aws.String(arn), CurrentVersion: ci.Version})
	var vm *types.VersionMismatchException
	if !errors.As(err, &vm) {
		t.Fatalf("stale version: %v, want VersionMismatchException", err)
	}

	byRole := map[types.ChannelRole]map[types.ChannelProtocol]string{}
	for _, role := range []types.ChannelRole{types.ChannelRoleMaster, types.ChannelRoleViewer} {
		ep, err := kv.GetSignalingChannelEndpoint(ctx, &kinesisvideo.GetSignalingChannelEndpointInput{
			ChannelARN: aws.String(arn),
			SingleMasterChannelEndpointConfiguration: &types.SingleMasterChannelEndpointConfiguration{
				Protocols: []types.ChannelProtocol{types.ChannelProtocolWss, types.ChannelProtocolHttps}, Role: role},
		})
		if err != nil {
			t.Fatalf("GetSignalingChannelEndpoint: %v", err)
		}
		byRole[role] = map[types.ChannelProtocol]string{}
		for _, e := range ep.ResourceEndpointList {
			byRole[role][e.Protocol] = aws.ToString(e.ResourceEndpoint)
		}
	}
	wantWS, wantHTTP := "ws://", "http://"
	if tlsOn {
		wantWS, wantHTTP = "wss://", "https://"
	}
	m, v := byRole[types.ChannelRoleMaster], byRole[types.ChannelRoleViewer]
	if !strings.HasPrefix(m[types.ChannelProtocolWss], wantWS) || !strings.HasPrefix(m[types.ChannelProtocolHttps], wantHTTP) ||
		m[types.ChannelProtocolWss] == v[types.ChannelProtocolWss] {
		t.Fatalf("endpoints %v", byRole)
	}

	if _, err := kv.TagResource(ctx, &kinesisvideo.TagResourceInput{ResourceARN: aws.String(arn), Tags: []types.Tag{{Key: aws.String("x"), Value: aws.String("y")}}}); err != nil {
		t.Fatalf("TagResource: %v", err)
	}
	if _, err := kv.UntagResource(ctx, &kinesisvideo.UntagResourceInput{ResourceARN: aws.String(arn), TagKeyList: []string{"k"}}); err != nil {
		t.Fatalf("UntagResource: %v", err)
	}
	// The first ListTagsForResource is throttled by the fault configured at start.
	_, err = kv.ListTagsForResource(ctx, &kinesisvideo.ListTagsForResourceInput{ResourceARN: aws.String(arn)})
	var cle *types.ClientLimitExceededException
	if !errors.As(err, &cle) {
		t.Fatalf("throttled call: %v, want ClientLimitExceededException", err)
	}
	tags, err := kv.ListTagsForResource(ctx, &kinesisvideo.ListTagsForResourceInput{ResourceARN: aws.String(arn)})
	if err != nil || len(tags.Tags) != 1 || tags.Tags["x"] != "y" {
		t.Fatalf("ListTagsForResource: %v %v", tags, err)
	}

	// Typed exceptions.
	_, err = kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{ChannelName: aws.String("sdk-channel")})
	var inUse *types.ResourceInUseException
	if !errors.As(err, &inUse) {
		t.Fatalf("duplicate: %v, want ResourceInUseException", err)
	}
	_, err = kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{ChannelName: aws.String("bad name")})
	var inv *types.InvalidArgumentException
	if !errors.As(err, &inv) {
		t.Fatalf("bad name: %v, want InvalidArgumentException", err)
	}
	_, err = kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelARN: aws.String("arn:aws:kinesisvideo:ap-south-1:111122223333:channel/theirs/1700000000000")})
	var denied *types.AccessDeniedException
	if !errors.As(err, &denied) {
		t.Fatalf("foreign ARN: %v, want AccessDeniedException", err)
	}

	if _, err := kv.DeleteSignalingChannel(ctx, &kinesisvideo.DeleteSignalingChannelInput{ChannelARN: aws.String(arn)}); err != nil {
		t.Fatalf("DeleteSignalingChannel: %v", err)
	}
	_, err = kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelARN: aws.String(arn)})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || !strings.Contains(nf.ErrorMessage(), "not found") {
		t.Fatalf("deleted: %v, want ResourceNotFoundException", err)
	}

	// A wrong secret: the SDK surfaces the error code.
	cr := srv.Credentials()
	bad := kinesisvideo.New(kinesisvideo.Options{
		Region: srv.Region(), BaseEndpoint: aws.String(srv.URL()), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(cr.AccessKeyID, "wrong", ""),
		HTTPClient:  &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(srv.CertPool())}},
	})
	_, err = bad.ListSignalingChannels(ctx, &kinesisvideo.ListSignalingChannelsInput{})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidSignatureException" {
		t.Fatalf("wrong secret: %v", err)
	}
	bad.Options().HTTPClient.(*http.Client).CloseIdleConnections()
}
