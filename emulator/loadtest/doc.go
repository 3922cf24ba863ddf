// Package loadtest is a load generator for a KVS WebRTC signaling service
// (the kvsrtc emulator, or anything that speaks the same API): it creates
// channels through the control plane, connects one master and N viewers per
// channel over presigned WebSockets, has every viewer send ICE_CANDIDATE
// messages to its master at a paced total rate while every master echoes
// them back, and reports the connect rate, routing throughput, one-way
// latency percentiles and, for the emulator, memory per connection.
//
//	res, err := loadtest.Run(ctx, loadtest.Config{
//		Endpoint: srv.URL(), Channels: 900, ViewersPerChannel: 10,
//		Rate: 10000, Duration: 20 * time.Second,
//	})
//	fmt.Println(res)
//
// Run raises the process's open-file soft limit to the hard limit and
// refuses (ErrFileLimit) a run whose connections do not fit: each needs one
// descriptor in the load generator and one in the service, so a service in
// the same process halves the largest run (see FilesNeeded, MaxChannels);
// kvsrtc bench signaling runs the service in a child process by default.
package loadtest
