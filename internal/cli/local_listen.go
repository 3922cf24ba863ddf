package cli

import (
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/kvsrtc/kvsrtc/emulator"
)

// checkListenScope refuses to serve off loopback (an unspecified address,
// a routable one, a host name other than localhost) with the published AWS
// documentation key pair, which anyone can sign with, unless insecure; with
// insecure it logs a warning.
func checkListenScope(log *slog.Logger, listen, akid, secret string, insecure bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || listenIsLoopback(host) {
		return nil // a bad address is reported by the emulator
	}
	if akid != emulator.DefaultCredentials.AccessKeyID && secret != emulator.DefaultCredentials.SecretAccessKey {
		return nil
	}
	if insecure {
		log.Warn("--insecure: serving off loopback with the published AWS documentation key pair; anyone who can reach this address can use the service and its TURN relay",
			"listen", listen)
		return nil
	}
	return fmt.Errorf("%w: --listen %s is reachable from other machines, and the service would accept the published AWS documentation key pair "+
		"(%s, which anyone can sign with): give your own --access-key-id and --secret-access-key "+
		"(e.g. --secret-access-key \"$(openssl rand -base64 30)\"), or add --insecure to serve anyone who can reach it",
		ErrUsage, listen, emulator.DefaultCredentials.AccessKeyID)
}

// listenIsLoopback reports whether a --listen host only accepts
// connections from this machine.
func listenIsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
