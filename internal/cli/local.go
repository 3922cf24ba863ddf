package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/sigv4"
	"github.com/kvsrtc/kvsrtc/storage"
)

func init() {
	register(command{
		name:    "local",
		summary: "run a local KVS WebRTC signaling service that AWS SDKs and the AWS CLI accept",
		run:     runLocal,
	})
}

// defaultLocalListen is the default --listen address: loopback, on a port
// that is rarely taken.
const defaultLocalListen = "127.0.0.1:9443"

func runLocal(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "local", "[flags]")
	var (
		cfg      emulator.Config
		channels stringList
		faults   stringList
		lf       logFlags
		akid     string
		secret   string
		insecure bool
		// storageLimit: storage.Config.SessionLimit
		storageLimit time.Duration
	)
	fs.StringVar(&cfg.Addr, "listen", defaultLocalListen, "address to listen on (one port for every API, the WebSockets and /_kvsrtc/); port 0 picks a free one")
	fs.StringVar(&cfg.Hostname, "hostname", "", "host name to put into the endpoints and the TLS certificate (default: the --listen address)")
	fs.StringVar(&cfg.Region, "region", emulator.DefaultRegion, "service region")
	fs.StringVar(&cfg.AccountID, "account", emulator.DefaultAccountID, "12-digit account id used in channel ARNs")
	fs.BoolVar(&cfg.TLS, "tls", false, "serve https and wss with a self-signed certificate (needed by browsers and the JS SDK signer)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "keep channels and the TLS certificate in this directory across restarts (default: memory only)")
	fs.Var(&channels, "channel", "create this channel at start if it does not exist (repeatable)")
	fs.Var(&faults, "fault", `inject a fault at start, e.g. "drop,action=SDP_ANSWER,count=1,channel=demo" (repeatable; see docs/EMULATOR.md)`)
	fs.DurationVar(&cfg.ICETTL, "ice-ttl", emulator.DefaultICETTL, "lifetime (Ttl) of TURN credentials from GetIceServerConfig")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", emulator.DefaultIdleTimeout, "close WebSockets without signaling messages for this long")
	fs.DurationVar(&cfg.MaxConnDuration, "max-duration", emulator.DefaultMaxConnDuration, "close every WebSocket after this long")
	fs.DurationVar(&cfg.GoAwayGrace, "goaway-grace", emulator.DefaultGoAwayGrace, "send GO_AWAY this long before --max-duration")
	fs.IntVar(&cfg.MaxViewers, "max-viewers", emulator.DefaultMaxViewers, "maximum concurrent viewers per channel")
	fs.IntVar(&cfg.StorageMaxViewers, "storage-max-viewers", emulator.DefaultStorageMaxViewers, "maximum viewers in one storage session (Multiviewer, JoinStorageSessionAsViewer)")
	fs.DurationVar(&storageLimit, "storage-session-limit", storage.DefaultSessionLimit, "end a participant's peer connection with the storage session this long after its offer (the service's 1-hour limit; shorter to test re-joins)")
	fs.BoolVar(&cfg.TURNDisabled, "no-turn", false, "run no TURN server (GetIceServerConfig returns an empty list)")
	fs.BoolVar(&cfg.DisableQuotas, "no-quotas", false, "disable the connect and message rate limits and the connection cap (benchmarks)")
	fs.BoolVar(&cfg.PingResetsIdle, "ping-resets-idle", false, "count WebSocket pings as activity for --idle-timeout")
	fs.StringVar(&akid, "access-key-id", emulator.DefaultCredentials.AccessKeyID, "the access key id the service accepts")
	fs.StringVar(&secret, "secret-access-key", emulator.DefaultCredentials.SecretAccessKey, "the secret access key the service accepts")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "token the admin API /_kvsrtc/ requires, 16+ characters (default: a random one, printed as $"+emulator.AdminTokenEnv+")")
	fs.BoolVar(&insecure, "insecure", false, "allow --listen off loopback with the default (published) key pair")
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if akid == "" || secret == "" {
		return fmt.Errorf("%w: --access-key-id and --secret-access-key must not be empty", ErrUsage)
	}
	if cfg.GoAwayGrace >= cfg.MaxConnDuration {
		return fmt.Errorf("%w: --goaway-grace %v must be shorter than --max-duration %v", ErrUsage, cfg.GoAwayGrace, cfg.MaxConnDuration)
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	if err := checkListenScope(log, cfg.Addr, akid, secret, insecure); err != nil {
		return err
	}
	cfg.Credentials = []sigv4.Credentials{{AccessKeyID: akid, SecretAccessKey: secret}}
	cfg.Channels = channels
	cfg.Faults = faults
	cfg.Logger = log
	if cfg.StorageMaxViewers < 1 {
		return fmt.Errorf("%w: --storage-max-viewers %d: give 1 or more", ErrUsage, cfg.StorageMaxViewers)
	}
	if storageLimit < time.Second {
		return fmt.Errorf("%w: --storage-session-limit %v: give 1s or more (the service's is 1h)", ErrUsage, storageLimit)
	}
	engine, err := storage.New(storage.Config{RTC: rtc.Config{LoopbackOnly: loopbackListen(cfg.Addr)}, SessionLimit: storageLimit, Logger: log.With("component", "storage")})
	if err != nil {
		return err
	}
	cfg.StorageMedia = engine

	srv, err := emulator.Start(ctx, cfg)
	if err != nil {
		return errors.Join(err, engine.Close())
	}
	fmt.Fprintf(env.Stdout, "kvsrtc local: listening on %s (region %s, account %s); paste the lines below into a shell to use it:\n",
		srv.URL(), srv.Region(), srv.AccountID())
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(env.Stdout, "export %s=%s\n", k, shellQuote(v))
	}
	fmt.Fprintf(env.Stdout, "export %s=%s\n", emulator.AdminTokenEnv, shellQuote(srv.AdminToken()))
	if cfg.TLS {
		fmt.Fprintf(env.Stdout, "# Chromium: --ignore-certificate-errors-spki-list=%s (or trust %s)\n", srv.SPKIHash(), srv.CACertFile())
	}
	fmt.Fprintf(env.Stdout, "# e.g.: aws kinesisvideo list-signaling-channels\n")
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx))
	// The storage sessions first: ending one writes its last fragment
	// into the archive, which the server still holds.
	eerr := engine.Close()
	return errors.Join(srv.Close(), eerr)
}

// shellQuote quotes v for a POSIX shell when it holds anything but safe
// characters.
func shellQuote(v string) string {
	safe := v != ""
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:+=@%,-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
