package emulator

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// DefaultCredentials is the key pair the service accepts when
// Config.Credentials is empty: the AWS documentation example pair, which the
// golden test vectors are signed with. It is not a real AWS key.
var DefaultCredentials = sigv4.Credentials{
	AccessKeyID:     "AKIDEXAMPLE",
	SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}

// Defaults used for zero Config fields.
const (
	DefaultAddr            = "127.0.0.1:0"
	DefaultRegion          = "us-west-2"
	DefaultAccountID       = "123456789012"
	DefaultICETTL          = 300 * time.Second
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultMaxConnDuration = time.Hour
	DefaultGoAwayGrace     = time.Minute
	DefaultMaxViewers      = kvsproto.MaxViewersPerChannel
	// DefaultTURNQuota is Config.TURNQuota's default: enough for a master
	// that serves the most viewers a channel allows over one credential,
	// each peer allocating over the three URIs (UDP, DTLS, TLS).
	DefaultTURNQuota = 3 * kvsproto.MaxViewersPerChannel
)

// ErrInvalidConfig is matched (errors.Is) by every error Start returns for a
// Config it cannot use; the message names the field and how to fix it.
var ErrInvalidConfig = errors.New("emulator: invalid config")

// Config configures a Server. The zero value is usable: every zero field
// gets the default documented on it.
type Config struct {
	// Addr is the TCP address to listen on; default "127.0.0.1:0" (a free
	// port). One listener serves every API, the WebSockets and the admin API.
	Addr string
	// Hostname, when set, is the host name put into every URL the service
	// hands out (and into its TLS certificate) instead of the listen
	// address, e.g. a name that resolves to this machine.
	Hostname string
	// Region is the service region; default "us-west-2". Requests must be
	// signed for it and channel ARNs name it.
	Region string
	// AccountID is the 12-digit account in channel ARNs; default
	// "123456789012".
	AccountID string
	// Credentials are the accepted key pairs; default DefaultCredentials.
	// A pair with a SessionToken also requires that token on every request.
	Credentials []sigv4.Credentials
	// TLS serves https and wss with a self-signed certificate (kept in
	// DataDir when it is set) instead of http and ws.
	TLS bool
	// DataDir, when set, persists channels, streams and media storage
	// configurations (channels.json), the streams' recorded fragments
	// (archive/, see AppendFragment) and the TLS certificate (cert.pem,
	// key.pem) there; otherwise all state is in memory. A Server holds the directory locked (LockFileName) until
	// Close: Start fails with ErrDataDirInUse while another holds it.
	DataDir string
	// Channels are channel names created at start if they do not exist.
	Channels []string
	// PreCreate are channels created at start with exactly these ARNs (for
	// replaying recorded requests). Their region and account must match the
	// Config's.
	PreCreate []kvsproto.ChannelARN
	// ICETTL is the lifetime of TURN credentials from GetIceServerConfig
	// (its Ttl); default 300 s. The C SDK rejects a Ttl of 30 s or less.
	ICETTL time.Duration
	// TURNDisabled runs no TURN server; GetIceServerConfig then returns an
	// empty IceServerList.
	TURNDisabled bool
	// TURNQuota is the most TURN allocations one credential (username)
	// may hold at once; more are refused with 486 Allocation Quota Reached.
	// Default DefaultTURNQuota.
	TURNQuota int
	// IdleTimeout closes a WebSocket without signaling messages for this
	// long; default 10 min.
	IdleTimeout time.Duration
	// PingResetsIdle makes WebSocket pings count as activity for
	// IdleTimeout (by default only signaling messages do).
	PingResetsIdle bool
	// MaxConnDuration closes every WebSocket this long after it opened;
	// default 1 h.
	MaxConnDuration time.Duration
	// GoAwayGrace is how long before MaxConnDuration a GO_AWAY is sent;
	// default 1 min. It must be shorter than MaxConnDuration.
	GoAwayGrace time.Duration
	// MaxViewers is the viewer limit per channel; default 10.
	MaxViewers int
	// StorageMaxViewers is the limit of viewers in one storage session
	// (JoinStorageSessionAsViewer); default DefaultStorageMaxViewers.
	StorageMaxViewers int

	// StorageMedia runs the storage sessions' media (package storage
	// implements it). nil: the storage API answers and records the joins,
	// but no storage session offers, forwards or records anything.
	StorageMedia StorageMedia
	// DisableQuotas turns off the connect and message rate limits and the
	// cap of 4096 connections open at once (for benchmarks).
	DisableQuotas bool
	// Faults are fault specs (see ParseFault) applied at start.
	Faults []string
	// Logger receives the service log; nil discards it.
	Logger *slog.Logger
	// Now is the service clock before any skew; default time.Now.
	Now func() time.Time
	// AdminToken is the token the admin API (/_kvsrtc/) requires (16 to 256
	// printable characters); default a random one, see Server.AdminToken.
	AdminToken string
}

// Limits that are not configurable.
const (
	maxBodyBytes     = 1 << 20 // REST request bodies
	wsReadLimit      = 32 << 10
	maxQueueFrames   = 512
	maxQueueBytes    = 2 << 20
	wsWriteTimeout   = 10 * time.Second
	shutdownWait     = 10 * time.Second
	maxChannelsLarge = 10000 // us-east-1, us-west-2
	maxChannelsSmall = 5000  // every other region
)

func invalidConfig(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// withDefaults returns a copy with defaults filled and checks it.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return c, invalidConfig("Addr", "%q is not host:port (%v); use e.g. 127.0.0.1:0", c.Addr, err)
	}
	if c.Hostname != "" && (strings.ContainsAny(c.Hostname, "/:?#@ []") || len(c.Hostname) > 253) {
		return c, invalidConfig("Hostname", "%q is not a host name or IPv4 address", c.Hostname)
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if !validRegion(c.Region) {
		return c, invalidConfig("Region", "%q is not a region name like us-west-2", c.Region)
	}
	if c.AccountID == "" {
		c.AccountID = DefaultAccountID
	}
	if len(c.AccountID) != 12 || strings.Trim(c.AccountID, "0123456789") != "" {
		return c, invalidConfig("AccountID", "%q must be 12 digits", c.AccountID)
	}
	if len(c.Credentials) == 0 {
		c.Credentials = []sigv4.Credentials{DefaultCredentials}
	}
	for i, cr := range c.Credentials {
		if cr.AccessKeyID == "" || cr.SecretAccessKey == "" {
			return c, invalidConfig("Credentials", "entry %d needs both an access key id and a secret access key", i)
		}
	}
	if c.ICETTL == 0 {
		c.ICETTL = DefaultICETTL
	}
	if c.ICETTL < time.Second || c.ICETTL > 24*time.Hour {
		return c, invalidConfig("ICETTL", "%v is outside 1s..24h", c.ICETTL)
	}
	if c.TURNQuota == 0 {
		c.TURNQuota = DefaultTURNQuota
	}
	if c.TURNQuota < 0 {
		return c, invalidConfig("TURNQuota", "%d must not be negative (0 means the default, %d)", c.TURNQuota, DefaultTURNQuota)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxConnDuration == 0 {
		c.MaxConnDuration = DefaultMaxConnDuration
	}
	if c.GoAwayGrace == 0 {
		c.GoAwayGrace = DefaultGoAwayGrace
		if c.GoAwayGrace >= c.MaxConnDuration {
			c.GoAwayGrace = c.MaxConnDuration / 2
		}
	}
	if c.IdleTimeout < 0 || c.MaxConnDuration < 0 || c.GoAwayGrace < 0 {
		return c, invalidConfig("IdleTimeout/MaxConnDuration/GoAwayGrace", "durations must not be negative")
	}
	if c.GoAwayGrace >= c.MaxConnDuration {
		return c, invalidConfig("GoAwayGrace", "%v must be shorter than MaxConnDuration %v", c.GoAwayGrace, c.MaxConnDuration)
	}
	if c.MaxViewers == 0 {
		c.MaxViewers = DefaultMaxViewers
	}
	if c.MaxViewers < 0 {
		return c, invalidConfig("MaxViewers", "%d must not be negative", c.MaxViewers)
	}
	if c.StorageMaxViewers == 0 {
		c.StorageMaxViewers = DefaultStorageMaxViewers
	}
	if c.StorageMaxViewers < 0 {
		return c, invalidConfig("StorageMaxViewers", "%d must not be negative", c.StorageMaxViewers)
	}
	for _, n := range c.Channels {
		if err := kvsproto.ValidateChannelName(n); err != nil {
			return c, invalidConfig("Channels", "%v", err)
		}
	}
	for _, a := range c.PreCreate {
		if a.Region != c.Region || a.Account != c.AccountID || a.Partition != kvsproto.PartitionForRegion(c.Region) {
			return c, invalidConfig("PreCreate", "%s is not in region %s, account %s", a, c.Region, c.AccountID)
		}
		if _, err := kvsproto.ParseChannelARN(a.String()); err != nil {
			return c, invalidConfig("PreCreate", "%v", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	tok, err := adminTokenOrNew(c.AdminToken)
	if err != nil {
		return c, err
	}
	c.AdminToken = tok
	return c, nil
}

func validRegion(r string) bool {
	if len(r) < 3 || len(r) > 32 || r[0] == '-' || r[len(r)-1] == '-' {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
