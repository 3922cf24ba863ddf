package kvstest_test

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/kvstest"
)

// Create a signaling channel and describe it with the AWS SDK for Go v2,
// as code under test would. In a test, env := kvstest.New(t, opts) does
// the same and closes it in the test's cleanup.
func Example() {
	env, err := kvstest.Start(kvstest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer env.Close()
	ctx := context.Background()
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	created, err := kv.CreateSignalingChannel(ctx, &kinesisvideo.CreateSignalingChannelInput{
		ChannelName: aws.String("front-door"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	described, err := kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{
		ChannelARN: created.ChannelARN,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	info := described.ChannelInfo
	fmt.Println(aws.ToString(info.ChannelName), info.ChannelStatus == types.StatusActive, info.ChannelType)
	// Output: front-door true SINGLE_MASTER
}
