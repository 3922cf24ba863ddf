package emulator

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// The archive of a stream: the fragments the storage session records (see
// AppendFragment), served by GetClip, ListFragments and HLS
// (archivedmedia.go). It keeps bytes only: the emulator does not parse
// media beyond the top-level MP4 boxes. Choices are in docs/EMULATOR.md,
// "The stream archive and the archived-media API".

// ArchiveFragment is one fragment of a stream: a fragmented-MP4 media
// segment (moof+mdat) that starts with a keyframe.
type ArchiveFragment struct {
	// Init is the init segment (ftyp+moov) this fragment needs;
	// consecutive fragments share it (same bytes).
	Init []byte
	// Media is the media segment: moof + mdat (an styp may precede them).
	Media []byte
	// Start is the producer timestamp of the first sample (wall clock at
	// the camera side).
	Start time.Time
	// Duration is the fragment's playback duration.
	Duration time.Duration
}

// Errors of AppendFragment, matched with errors.Is.
var (
	// ErrStreamNotFound: no stream has this ARN (never created, or deleted).
	ErrStreamNotFound = errors.New("emulator: stream not found")
	// ErrNoDataRetention: the stream has DataRetentionInHours 0, so it
	// keeps no media.
	ErrNoDataRetention = errors.New("emulator: stream has no data retention")
	// ErrBadFragment: the fragment is not an init (ftyp+moov) and a media
	// segment (moof+mdat) with a positive duration and a start time, or is
	// too large.
	ErrBadFragment = errors.New("emulator: bad archive fragment")
)

// Archive bounds.
const (
	// maxArchiveMemBytes is the most media (init and fragment bytes) one
	// stream's archive holds in memory when there is no DataDir; the
	// oldest fragments are dropped beyond it. With a DataDir the media is
	// on disk and only the index is in memory.
	maxArchiveMemBytes = 256 << 20
	// maxArchiveFragments is the most fragments one stream's archive
	// indexes (about 55 hours of 2-second fragments); the oldest are
	// dropped beyond it.
	maxArchiveFragments = 100000
	// maxFragmentBytes is the largest fragment (KVS's fragment size limit
	// is 50 MB); maxInitBytes the largest init segment.
	maxFragmentBytes = 50 << 20
	maxInitBytes     = 1 << 20
)

// storedFragment is one fragment in an archive's index.
type storedFragment struct {
	Number   uint64        `json:"n"`
	Producer time.Time     `json:"p"`
	Server   time.Time     `json:"s"`
	Duration time.Duration `json:"d"`
	Init     int           `json:"i"` // index into streamArchive.inits
	Size     int64         `json:"z"`
	media    []byte        // nil when on disk
}

// streamArchive is the archive of one stream; guarded by archives.mu.
type streamArchive struct {
	arn      string
	dir      string // "" in memory
	frags    []*storedFragment
	inits    map[int][]byte
	lastInit int
	nextNum  uint64
	memBytes int64
}

// archives holds every stream's archive.
type archives struct {
	log  *slog.Logger
	root string // DataDir/archive, or ""

	mu       sync.Mutex
	byStream map[string]*streamArchive

	hlsMu sync.Mutex
	hls   map[string]*hlsSession // by session token
}

func newArchives(dataDir string, log *slog.Logger) *archives {
	a := &archives{log: log, byStream: map[string]*streamArchive{}}
	if dataDir != "" {
		a.root = filepath.Join(dataDir, "archive")
	}
	return a
}

// archiveDirName is the directory of a stream's archive: its name and
// creation time, which identify the ARN within one region and account.
func archiveDirName(arn string) string {
	a, err := kvsproto.ParseStreamARN(arn)
	if err != nil {
		return ""
	}
	return a.Name + "." + strconv.FormatInt(a.CreationMillis, 10)
}

// get returns the stream's archive, loading it from disk the first time;
// the caller holds mu.
func (a *archives) get(arn string) *streamArchive {
	if sa := a.byStream[arn]; sa != nil {
		return sa
	}
	sa := &streamArchive{arn: arn, inits: map[int][]byte{}, lastInit: -1, nextNum: 1}
	if a.root != "" {
		if name := archiveDirName(arn); name != "" {
			sa.dir = filepath.Join(a.root, name)
			if err := sa.load(); err != nil {
				a.log.Warn("archive: could not read the stored index; starting an empty archive", "stream_arn", arn, "err", err)
			}
		}
	}
	a.byStream[arn] = sa
	return sa
}

const archiveIndexFile = "index.jsonl"

func (sa *streamArchive) initPath(id int) string {
	return filepath.Join(sa.dir, "init-"+strconv.Itoa(id)+".mp4")
}

func (sa *streamArchive) fragPath(n uint64) string {
	return filepath.Join(sa.dir, strconv.FormatUint(n, 10)+".m4s")
}

// load reads the index of a stream's archive from disk, keeping the
// entries whose files still exist, and rewrites it compacted.
func (sa *streamArchive) load() error {
	f, err := os.Open(filepath.Join(sa.dir, archiveIndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	dropped := 0
	for sc.Scan() {
		var sf storedFragment
		if json.Unmarshal(sc.Bytes(), &sf) != nil || sf.Number == 0 {
			dropped++
			continue
		}
		if sf.Number >= sa.nextNum {
			sa.nextNum = sf.Number + 1
		}
		if _, err := os.Stat(sa.fragPath(sf.Number)); err != nil {
			dropped++
			continue
		}
		if _, ok := sa.inits[sf.Init]; !ok {
			b, err := os.ReadFile(sa.initPath(sf.Init))
			if err != nil {
				dropped++
				continue
			}
			sa.inits[sf.Init] = b
		}
		if sf.Init > sa.lastInit {
			sa.lastInit = sf.Init
		}
		sa.frags = append(sa.frags, &sf)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if dropped > 0 {
		return sa.rewriteIndex()
	}
	return nil
}

func (sa *streamArchive) rewriteIndex() error {
	var buf bytes.Buffer
	for _, sf := range sa.frags {
		b, _ := json.Marshal(sf)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	tmp := filepath.Join(sa.dir, archiveIndexFile+".tmp")
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(sa.dir, archiveIndexFile))
}

// media returns a fragment's bytes.
func (sa *streamArchive) media(sf *storedFragment) ([]byte, error) {
	if sf.media != nil {
		return sf.media, nil
	}
	return os.ReadFile(sa.fragPath(sf.Number))
}

// prune drops fragments older than the retention and beyond the bounds.
func (sa *streamArchive) prune(now time.Time, retention time.Duration) {
	drop := 0
	for drop < len(sa.frags) {
		sf := sa.frags[drop]
		old := retention > 0 && now.Sub(sf.Server) > retention
		tooMany := len(sa.frags)-drop > maxArchiveFragments
		tooBig := sa.dir == "" && sa.memBytes > maxArchiveMemBytes
		if !old && !tooMany && !tooBig {
			break
		}
		if sa.dir == "" {
			sa.memBytes -= sf.Size
		} else {
			_ = os.Remove(sa.fragPath(sf.Number))
		}
		drop++
	}
	if drop == 0 {
		return
	}
	sa.frags = append([]*storedFragment(nil), sa.frags[drop:]...)
	used := map[int]bool{}
	for _, sf := range sa.frags {
		used[sf.Init] = true
	}
	for id, b := range sa.inits {
		if !used[id] && id != sa.lastInit {
			delete(sa.inits, id)
			if sa.dir == "" {
				sa.memBytes -= int64(len(b))
			} else {
				_ = os.Remove(sa.initPath(id))
			}
		}
	}
}

// append stores one fragment.
func (sa *streamArchive) append(f ArchiveFragment, server time.Time) (*storedFragment, error) {
	initID := sa.lastInit
	newInit := initID < 0 || !bytes.Equal(sa.inits[initID], f.Init)
	if newInit {
		initID++
	}
	sf := &storedFragment{Number: sa.nextNum, Producer: f.Start, Server: server, Duration: f.Duration, Init: initID, Size: int64(len(f.Media))}
	if sa.dir != "" {
		if err := os.MkdirAll(sa.dir, 0o700); err != nil {
			return nil, err
		}
		if newInit {
			if err := os.WriteFile(sa.initPath(initID), f.Init, 0o600); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(sa.fragPath(sf.Number), f.Media, 0o600); err != nil {
			return nil, err
		}
		line, _ := json.Marshal(sf)
		idx, err := os.OpenFile(filepath.Join(sa.dir, archiveIndexFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		_, werr := idx.Write(append(line, '\n'))
		cerr := idx.Close()
		if err := errors.Join(werr, cerr); err != nil {
			return nil, err
		}
	} else {
		sf.media = append([]byte(nil), f.Media...)
		sa.memBytes += sf.Size
		if newInit {
			sa.memBytes += int64(len(f.Init))
		}
	}
	if newInit {
		sa.inits[initID] = append([]byte(nil), f.Init...)
		sa.lastInit = initID
	}
	sa.nextNum++
	sa.frags = append(sa.frags, sf)
	return sf, nil
}

// drop removes a stream's archive (DeleteStream).
func (a *archives) drop(arn string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byStream, arn)
	if a.root != "" {
		if name := archiveDirName(arn); name != "" {
			if err := os.RemoveAll(filepath.Join(a.root, name)); err != nil {
				a.log.Warn("archive: could not remove the deleted stream's media", "stream_arn", arn, "err", err)
			}
		}
	}
}

// topBoxes returns the types of the top-level MP4 boxes of b, or false if
// b is not a sequence of whole boxes.
func topBoxes(b []byte) ([]string, bool) {
	var types []string
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, false
		}
		size := uint64(binary.BigEndian.Uint32(b))
		hdr := uint64(8)
		switch size {
		case 1:
			if len(b) < 16 {
				return nil, false
			}
			size, hdr = binary.BigEndian.Uint64(b[8:]), 16
		case 0:
			size = uint64(len(b))
		}
		if size < hdr || size > uint64(len(b)) {
			return nil, false
		}
		types = append(types, string(b[4:8]))
		b = b[size:]
	}
	return types, true
}

func hasBox(types []string, t string) bool {
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

// checkFragment validates f's shape.
func checkFragment(f ArchiveFragment) error {
	if len(f.Init) == 0 || len(f.Init) > maxInitBytes {
		return fmt.Errorf("%w: Init is %d bytes; want 1..%d", ErrBadFragment, len(f.Init), maxInitBytes)
	}
	if len(f.Media) == 0 || len(f.Media) > maxFragmentBytes {
		return fmt.Errorf("%w: Media is %d bytes; want 1..%d", ErrBadFragment, len(f.Media), maxFragmentBytes)
	}
	it, ok := topBoxes(f.Init)
	if !ok || len(it) == 0 || it[0] != "ftyp" || !hasBox(it, "moov") {
		return fmt.Errorf("%w: Init must be MP4 boxes ftyp then moov, got %v", ErrBadFragment, it)
	}
	mt, ok := topBoxes(f.Media)
	if ok && len(mt) > 0 && mt[0] == "styp" {
		mt = mt[1:]
	}
	if !ok || len(mt) < 2 || mt[0] != "moof" || !hasBox(mt, "mdat") {
		return fmt.Errorf("%w: Media must be MP4 boxes moof then mdat, got %v", ErrBadFragment, mt)
	}
	if f.Duration <= 0 {
		return fmt.Errorf("%w: Duration %v must be positive", ErrBadFragment, f.Duration)
	}
	if f.Start.IsZero() {
		return fmt.Errorf("%w: Start (the producer timestamp) is not set", ErrBadFragment)
	}
	return nil
}

// AppendFragment adds a fragment to the archive of the stream streamARN:
// it gets the next fragment number, the service clock as its server
// timestamp and f.Start as its producer timestamp. Fragments older than
// the stream's DataRetentionInHours are dropped. It fails with
// ErrStreamNotFound for a stream that does not exist (or was deleted),
// ErrNoDataRetention for a stream that keeps no data, ErrBadFragment for
// a malformed fragment, and ErrClosed after Close.
func (s *Server) AppendFragment(streamARN string, f ArchiveFragment) error {
	if s.isClosing() {
		return ErrClosed
	}
	if err := checkFragment(f); err != nil {
		return err
	}
	st, ok := s.store.streamByARN(streamARN)
	if !ok {
		return fmt.Errorf("%w: %s", ErrStreamNotFound, streamARN)
	}
	if st.RetentionHours == 0 {
		return fmt.Errorf("%w: %s has DataRetentionInHours 0", ErrNoDataRetention, st.Name)
	}
	// KVS timestamps have millisecond precision.
	now := s.now().Truncate(time.Millisecond)
	f.Start = f.Start.Truncate(time.Millisecond)
	a := s.archive
	a.mu.Lock()
	defer a.mu.Unlock()
	// The stream may have been deleted since the lookup: check again under
	// the archive's lock, which drop also takes.
	if _, ok := s.store.streamByARN(streamARN); !ok {
		return fmt.Errorf("%w: %s", ErrStreamNotFound, streamARN)
	}
	sa := a.get(streamARN)
	sf, err := sa.append(f, now)
	if err != nil {
		return fmt.Errorf("emulator: archiving a fragment of %s: %w", st.Name, err)
	}
	sa.prune(now, time.Duration(st.RetentionHours)*time.Hour)
	a.log.Debug("archive: fragment stored", "stream", st.Name, "fragment", sf.Number, "bytes", sf.Size, "duration", f.Duration)
	return nil
}

// archivedFragment is a copy of a stored fragment's index entry with its
// init, for serving.
type archivedFragment struct {
	storedFragment
	initBytes []byte
	sa        *streamArchive
}

// fragments returns a snapshot of a stream's archive (after pruning), in
// ingestion order.
func (s *Server) fragments(st *stream) []archivedFragment {
	a := s.archive
	a.mu.Lock()
	defer a.mu.Unlock()
	sa := a.get(st.ARN)
	sa.prune(s.now(), time.Duration(st.RetentionHours)*time.Hour)
	out := make([]archivedFragment, len(sa.frags))
	for i, sf := range sa.frags {
		out[i] = archivedFragment{storedFragment: *sf, initBytes: sa.inits[sf.Init], sa: sa}
	}
	return out
}

// read returns the fragment's media bytes.
func (af *archivedFragment) read() ([]byte, error) {
	if af.storedFragment.media != nil {
		return af.storedFragment.media, nil
	}
	return af.sa.media(&af.storedFragment)
}

// isClosing reports whether Close has started.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// removeStaleArchives deletes, at start, the archive directories of
// streams that no longer exist (deleted while another version of the
// service, or a crash, left their media behind).
func (s *Server) removeStaleArchives() {
	root := s.archive.root
	if root == "" {
		return
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			if st, ok := s.store.streamByName(name[:i]); ok && archiveDirName(st.ARN) == name {
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
			s.log.Warn("archive: could not remove the media of a stream that no longer exists", "dir", name, "err", err)
			continue
		}
		s.log.Info("archive: removed the media of a stream that no longer exists", "dir", name)
	}
}
