package emulator

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// channel is one signaling channel. Values handed out of the store are
// copies.
type channel struct {
	Name           string            `json:"name"`
	ARN            string            `json:"arn"`
	Type           string            `json:"type"`
	Status         string            `json:"status"`
	CreationMillis int64             `json:"creationMillis"`
	TTLSeconds     int               `json:"messageTtlSeconds"`
	Version        string            `json:"version"`
	Tags           map[string]string `json:"tags,omitempty"`
	// StorageStreamARN is the stream of an ENABLED media storage
	// configuration ("" = DISABLED). The stream may have been deleted since.
	StorageStreamARN string `json:"storageStreamArn,omitempty"`
}

func (c *channel) info() kvsproto.ChannelInfo {
	ttl := c.TTLSeconds
	return kvsproto.ChannelInfo{
		ChannelName:               c.Name,
		ChannelARN:                c.ARN,
		ChannelType:               kvsproto.ChannelType(c.Type),
		ChannelStatus:             kvsproto.ChannelStatus(c.Status),
		CreationTime:              float64(c.CreationMillis) / 1000,
		SingleMasterConfiguration: &kvsproto.SingleMasterConfiguration{MessageTtlSeconds: &ttl},
		Version:                   c.Version,
	}
}

func (c *channel) messageTTL() time.Duration { return time.Duration(c.TTLSeconds) * time.Second }

func (c *channel) clone() *channel {
	cp := *c
	if c.Tags != nil {
		cp.Tags = make(map[string]string, len(c.Tags))
		for k, v := range c.Tags {
			cp.Tags[k] = v
		}
	}
	return &cp
}

// storeFile is the on-disk format of channels.json.
type storeFile struct {
	FormatVersion int        `json:"formatVersion"`
	Channels      []*channel `json:"channels"`
	Streams       []*stream  `json:"streams,omitempty"`
}

const storeFormatVersion = 1

// store holds the channels, in memory and optionally in a JSON file written
// atomically (temp file, fsync, rename, fsync of the directory) on every
// change.
type store struct {
	mu          sync.Mutex
	byName      map[string]*channel
	byARN       map[string]*channel
	lastMillis  map[string]int64 // per name: the newest creation time ever used
	path        string           // "" = memory only
	lock        *dirLock         // held while the store uses a data dir
	staleTemps  []string         // interrupted writes removed at start
	region      string
	account     string
	maxChannels int

	streams      map[string]*stream // by name
	streamsByARN map[string]*stream
	lastStreamMs map[string]int64 // per name: the newest creation time ever used
}

func newStore(dataDir, region, account string) (*store, error) {
	s := &store{
		byName:       map[string]*channel{},
		byARN:        map[string]*channel{},
		lastMillis:   map[string]int64{},
		streams:      map[string]*stream{},
		streamsByARN: map[string]*stream{},
		lastStreamMs: map[string]int64{},
		region:       region,
		account:      account,
	}
	s.maxChannels = maxChannelsSmall
	if region == "us-east-1" || region == "us-west-2" {
		s.maxChannels = maxChannelsLarge
	}
	if dataDir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("emulator: data dir: %w", err)
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	if err := s.load(dataDir); err != nil {
		lock.release()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

// load removes stale temporary files from dataDir and reads its channel
// file; the caller holds the directory's lock.
func (s *store) load(dataDir string) error {
	removed, err := removeStaleTemps(dataDir)
	if err != nil {
		return fmt.Errorf("emulator: removing temporary files of an interrupted write in %s: %w", dataDir, err)
	}
	s.staleTemps = removed
	s.path = filepath.Join(dataDir, "channels.json")
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("emulator: reading channels: %w", err)
	}
	var f storeFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("emulator: %s is not a valid channel file (%v); move it away to start empty", s.path, err)
	}
	if f.FormatVersion != storeFormatVersion {
		return fmt.Errorf("emulator: %s has format version %d, want %d", s.path, f.FormatVersion, storeFormatVersion)
	}
	for _, c := range f.Channels {
		a, err := kvsproto.ParseChannelARN(c.ARN)
		if err != nil || a.Name != c.Name || c.Version == "" {
			return fmt.Errorf("emulator: %s: bad channel entry %q (%v)", s.path, c.Name, err)
		}
		if a.Region != s.region || a.Account != s.account {
			return fmt.Errorf("emulator: %s: channel %s belongs to region %s account %s, but the service runs as region %s account %s; use the same --region/--account or another --data-dir",
				s.path, c.Name, a.Region, a.Account, s.region, s.account)
		}
		if c.TTLSeconds == 0 {
			c.TTLSeconds = kvsproto.DefaultMessageTTLSeconds
		}
		s.byName[c.Name] = c
		s.byARN[c.ARN] = c
		s.lastMillis[c.Name] = c.CreationMillis
	}
	return s.loadStreams(f.Streams)
}

// setURL records the service's URL in the data directory's lock file.
func (s *store) setURL(url string) {
	if s.lock != nil {
		_ = s.lock.write(url)
	}
}

// close releases the data directory.
func (s *store) close() {
	s.lock.release()
}

// persist writes the channel file; the caller holds s.mu.
func (s *store) persist() error {
	if s.path == "" {
		return nil
	}
	f := storeFile{FormatVersion: storeFormatVersion, Channels: make([]*channel, 0, len(s.byName))}
	for _, c := range s.byName {
		f.Channels = append(f.Channels, c)
	}
	sort.Slice(f.Channels, func(i, j int) bool { return f.Channels[i].Name < f.Channels[j].Name })
	for _, st := range s.streams {
		f.Streams = append(f.Streams, st)
	}
	sort.Slice(f.Streams, func(i, j int) bool { return f.Streams[i].Name < f.Streams[j].Name })
	raw, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.path, raw, 0o600)
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func (s *store) persistOrError() *apiError {
	if err := s.persist(); err != nil {
		return &apiError{500, "InternalFailure", "could not persist the channel state: " + err.Error()}
	}
	return nil
}

// create adds a channel. When arn is non-nil it is used as is (PreCreate);
// otherwise the ARN is built from the name and now.
func (s *store) create(name string, ttlSeconds int, tags map[string]string, now time.Time, arn *kvsproto.ChannelARN) (*channel, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byName[name]; ok {
		if arn != nil && old.ARN == arn.String() {
			return old.clone(), nil
		}
		return nil, errInUse(fmt.Sprintf("The signaling channel %s already exists (ChannelARN %s).", name, old.ARN))
	}
	if len(s.byName) >= s.maxChannels {
		return nil, &apiError{400, kvsproto.ErrCodeAccountChannelLimit,
			fmt.Sprintf("You have reached the maximum limit of %d signaling channels in %s for this account.", s.maxChannels, s.region)}
	}
	var a kvsproto.ChannelARN
	if arn != nil {
		a = *arn
	} else {
		ms := now.UnixMilli()
		if last, ok := s.lastMillis[name]; ok && ms <= last {
			ms = last + 1 // never reuse the ARN of a deleted channel
		}
		a = kvsproto.ChannelARN{Partition: kvsproto.PartitionForRegion(s.region), Region: s.region, Account: s.account, Name: name, CreationMillis: ms}
	}
	c := &channel{
		Name:           name,
		ARN:            a.String(),
		Type:           string(kvsproto.ChannelTypeSingleMaster),
		Status:         string(kvsproto.StatusActive),
		CreationMillis: a.CreationMillis,
		TTLSeconds:     ttlSeconds,
		Version:        newVersion(),
		Tags:           tags,
	}
	s.byName[name] = c
	s.byARN[c.ARN] = c
	if a.CreationMillis > s.lastMillis[name] {
		s.lastMillis[name] = a.CreationMillis
	}
	if e := s.persistOrError(); e != nil {
		delete(s.byName, name)
		delete(s.byARN, c.ARN)
		return nil, e
	}
	return c.clone(), nil
}

func (s *store) byNameGet(name string) (*channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	return c.clone(), true
}

func (s *store) byARNGet(arn string) (*channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byARN[arn]
	if !ok {
		return nil, false
	}
	return c.clone(), true
}

// list returns up to max channels whose name starts with prefix and sorts
// after the name `after`, by name, and whether more remain.
func (s *store) list(prefix, after string, max int) ([]*channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return listPageOf(s.byName, prefix, after, max, (*channel).clone)
}

// listPageOf returns, by name, up to max clones of the values of byName
// whose name starts with prefix and sorts after the name after, and
// whether more remain.
func listPageOf[T any](byName map[string]T, prefix, after string, max int, clone func(T) T) ([]T, bool) {
	names := make([]string, 0, len(byName))
	for n := range byName {
		if strings.HasPrefix(n, prefix) && n > after {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	more := len(names) > max
	if more {
		names = names[:max]
	}
	out := make([]T, len(names))
	for i, n := range names {
		out[i] = clone(byName[n])
	}
	return out, more
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byName)
}

// mutate applies fn to the channel with this ARN and persists the result.
// fn may return an error to leave the channel unchanged.
func (s *store) mutate(arn string, fn func(c *channel) *apiError) (*channel, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byARN[arn]
	if !ok {
		return nil, errNotFound(channelNotFoundMsg)
	}
	backup := c.clone()
	if e := fn(c); e != nil {
		*c = *backup
		return nil, e
	}
	if e := s.persistOrError(); e != nil {
		*c = *backup
		return nil, e
	}
	return c.clone(), nil
}

// remove deletes the channel with this ARN if version is "" or matches.
func (s *store) remove(arn, version string) (*channel, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byARN[arn]
	if !ok {
		return nil, errNotFound(channelNotFoundMsg)
	}
	if version != "" && version != c.Version {
		return nil, errVersionMismatch(fmt.Sprintf("The CurrentVersion %s does not match the channel's version %s; describe the channel to get its current version.", version, c.Version))
	}
	delete(s.byName, c.Name)
	delete(s.byARN, c.ARN)
	if e := s.persistOrError(); e != nil {
		s.byName[c.Name] = c
		s.byARN[c.ARN] = c
		return nil, e
	}
	return c, nil
}

// newVersion returns a random 20-character alphanumeric version string.
func newVersion() string { return rand.Text()[:20] }
