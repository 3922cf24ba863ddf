package emulator

import (
	"bytes"
	"net"
	"testing"
)

func TestPeerAllowed(t *testing.T) {
	for _, tc := range []struct {
		relay, peer string
		ok          bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.2", true},
		{"127.0.0.1", "::1", true},
		{"127.0.0.1", "192.168.1.5", false},
		{"127.0.0.1", "8.8.8.8", false},
		{"127.0.0.1", "169.254.169.254", false},
		{"192.168.1.10", "192.168.1.20", true},
		{"192.168.1.10", "10.0.0.1", true},
		{"192.168.1.10", "8.8.8.8", true},
		{"192.168.1.10", "127.0.0.1", false},
		{"192.168.1.10", "169.254.169.254", false},
		{"192.168.1.10", "fe80::1", false},
		{"192.168.1.10", "fd00:ec2::254", false},
		{"192.168.1.10", "0.0.0.0", false},
		{"192.168.1.10", "255.255.255.255", false},
		{"192.168.1.10", "239.1.1.1", false},
		{"203.0.113.7", "8.8.8.8", true},
		{"203.0.113.7", "10.0.0.1", false},
		{"203.0.113.7", "100.64.1.1", false},
		{"203.0.113.7", "::ffff:127.0.0.1", false},
	} {
		ok, why := peerAllowed(net.ParseIP(tc.relay), net.ParseIP(tc.peer))
		if ok != tc.ok {
			t.Errorf("relay %s, peer %s: allowed=%v (%s), want %v", tc.relay, tc.peer, ok, why, tc.ok)
		}
		if !ok && why == "" {
			t.Errorf("relay %s, peer %s: refused without a reason", tc.relay, tc.peer)
		}
	}
}

func TestPadChannelData(t *testing.T) {
	buf := make([]byte, 64)
	// Channel 0x4001, 5 bytes of data, unpadded (allowed over UDP/DTLS).
	copy(buf, []byte{0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0xff, 0xff, 0xff})
	if n := padChannelData(buf, 9); n != 12 || !bytes.Equal(buf[:12], []byte{0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0}) {
		t.Fatalf("padded to %d: % x", n, buf[:12])
	}
	// Already padded, a STUN message, a short read: unchanged.
	copy(buf, []byte{0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4})
	if n := padChannelData(buf, 8); n != 8 {
		t.Fatalf("aligned frame: %d", n)
	}
	copy(buf, []byte{0x00, 0x01, 0x00, 0x00})
	if n := padChannelData(buf, 20); n != 20 {
		t.Fatalf("STUN message: %d", n)
	}
	if n := padChannelData(buf[:10], 9); n != 9 {
		t.Fatalf("no room to pad: %d", n)
	}
}
