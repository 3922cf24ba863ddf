package cli

import (
	"flag"
	"fmt"

	"github.com/kvsrtc/kvsrtc/player"
)

// storageFlag is kvsrtc serve's --storage: whether the pages watch a
// channel linked to a KVS stream (WebRTC ingestion) through its storage
// session (Multiviewer) instead of as viewers of the camera.
type storageFlag string

func (s *storageFlag) register(fs *flag.FlagSet) {
	fs.StringVar((*string)(s), "storage", string(player.StorageAuto),
		"how pages watch a channel with WebRTC ingestion (media storage configuration ENABLED): auto (through its storage session, Multiviewer, when "+
			"DescribeMediaStorageConfiguration says ENABLED; other channels directly), on (every channel through its storage session), off (always directly); "+
			"the server calls JoinStorageSessionAsViewer for each page, so its IAM policy needs kinesisvideo:DescribeMediaStorageConfiguration and JoinStorageSessionAsViewer")
}

// mode is the player's storage mode, or a usage error.
func (s storageFlag) mode() (player.StorageMode, error) {
	switch m := player.StorageMode(s); m {
	case player.StorageAuto, player.StorageOn, player.StorageOff:
		return m, nil
	}
	return "", fmt.Errorf("%w: --storage %q: use auto, on or off", ErrUsage, string(s))
}

// apiOnly refuses a --storage other than auto with --api-only, whose
// handler watches through the storage session whenever a channel has one.
func (s storageFlag) apiOnly() error {
	if s != "" && player.StorageMode(s) != player.StorageAuto {
		return fmt.Errorf("%w: --storage goes with the built-in player; with --api-only a channel with a storage configuration is always watched through its storage session", ErrUsage)
	}
	return nil
}
