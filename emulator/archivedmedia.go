package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// GetDataEndpoint (kinesisvideo) and the Kinesis Video Archived Media API
// (2017-09-30): GetClip, GetHLSStreamingSessionURL with the HLS requests of
// its session, and ListFragments, served from the stream archive
// (archive.go). Choices where AWS is undocumented are in docs/EMULATOR.md,
// "The stream archive and the archived-media API".

// Limits of the archived-media API.
const (
	// maxClipRange is the longest GetClip (and ON_DEMAND HLS) time range.
	maxClipRange = 24 * time.Hour
	// maxClipFragments and maxClipBytes bound a clip: the model says the
	// output contains "the first 100 MB or the first 200 fragments".
	maxClipFragments = 200
	maxClipBytes     = 100 << 20
	// liveWindow: a LIVE session needs a fragment this recent.
	liveWindow = 30 * time.Second
	// discontinuityGap is the gap or overlap between fragments that
	// ON_DISCONTINUITY marks.
	discontinuityGap = 50 * time.Millisecond
	// maxHLSSessions bounds the HLS sessions alive at once (expired ones
	// are dropped first).
	maxHLSSessions = 1000
	// Defaults of MaxMediaPlaylistFragmentResults.
	defaultHLSLiveResults     = 5
	defaultHLSOnDemandResults = 1000
	defaultListFragments      = 1000
)

// rawResponse is an operation result that is not JSON (GetClip's MP4).
type rawResponse struct {
	contentType string
	body        []byte
}

func (r rawResponse) writeResponse(w http.ResponseWriter) {
	w.Header().Set("Content-Type", r.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(r.body)
}

// findStream resolves StreamName or StreamARN (one is required; with both
// they must name the same stream).
func (s *Server) findStream(name, arn string) (*stream, *apiError) {
	switch {
	case name == "" && arn == "":
		return nil, errInvalidArgument("Specify either StreamName or StreamARN.")
	case arn != "":
		st, e := s.resolveStreamARN("streamARN", arn, false)
		if e != nil {
			return nil, e
		}
		if name != "" && name != st.Name {
			return nil, errInvalidArgument(fmt.Sprintf("StreamName %s and StreamARN %s name different streams; give one of them.", name, arn))
		}
		return st, nil
	default:
		if err := kvsproto.ValidateStreamName(name); err != nil {
			return nil, invalidFrom("streamName", err)
		}
		st, ok := s.store.streamByName(name)
		if !ok {
			return nil, errNotFound(streamNotFoundMsg(name))
		}
		return st, nil
	}
}

func enumError(member, value string, allowed ...string) *apiError {
	return errInvalidArgument(validationMsg(member, value, "Member must satisfy enum value set: ["+strings.Join(allowed, ", ")+"]"))
}

func noRetention(st *stream) *apiError {
	return &apiError{http.StatusBadRequest, kvsproto.ErrCodeNoDataRetention,
		fmt.Sprintf("The stream %s has DataRetentionInHours 0 and keeps no media; playback needs a stream with data retention.", st.Name)}
}

// opGetDataEndpoint answers with this service's URL for every APIName.
func (s *Server) opGetDataEndpoint(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.GetDataEndpointInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.APIName == "" {
		return nil, missing("aPIName")
	}
	valid := false
	for _, n := range kvsproto.DataEndpointAPINames {
		valid = valid || n == in.APIName
	}
	if !valid {
		return nil, enumError("aPIName", in.APIName, kvsproto.DataEndpointAPINames...)
	}
	if _, e := s.findStream(in.StreamName, in.StreamARN); e != nil {
		return nil, e
	}
	return kvsproto.GetDataEndpointOutput{DataEndpoint: s.URL()}, nil
}

// timestampOf is a fragment's timestamp of the selector type.
func timestampOf(f *archivedFragment, producer bool) time.Time {
	if producer {
		return f.Producer
	}
	return f.Server
}

// selectFragments returns the fragments whose start (of the selector's
// origin) is in [start, end] (end optional), ordered by it; with producer
// timestamps, duplicates keep the first ingested.
func selectFragments(all []archivedFragment, producer bool, start time.Time, end *time.Time) []archivedFragment {
	var out []archivedFragment
	for i := range all {
		ts := timestampOf(&all[i], producer)
		if ts.Before(start) || end != nil && ts.After(*end) {
			continue
		}
		out = append(out, all[i])
	}
	sort.SliceStable(out, func(i, j int) bool {
		return timestampOf(&out[i], producer).Before(timestampOf(&out[j], producer))
	})
	if producer {
		dedup := out[:0]
		for i := range out {
			if len(dedup) > 0 && dedup[len(dedup)-1].Producer.Equal(out[i].Producer) {
				continue
			}
			dedup = append(dedup, out[i])
		}
		out = dedup
	}
	return out
}

// checkSelectorType validates FragmentSelectorType; "" gives def.
func checkSelectorType(member, v, def string) (producer bool, e *apiError) {
	switch v {
	case "":
		return def == kvsproto.SelectorProducerTimestamp, nil
	case kvsproto.SelectorProducerTimestamp:
		return true, nil
	case kvsproto.SelectorServerTimestamp:
		return false, nil
	}
	return false, enumError(member, v, kvsproto.SelectorProducerTimestamp, kvsproto.SelectorServerTimestamp)
}

// checkRange validates a range whose end is required unless endOptional.
func checkRange(member string, r *kvsproto.TimestampRange, endOptional bool) *apiError {
	if r == nil {
		return missing(member)
	}
	if r.StartTimestamp == nil {
		return missing(member + ".startTimestamp")
	}
	if r.EndTimestamp == nil {
		if endOptional {
			return nil
		}
		return missing(member + ".endTimestamp")
	}
	start, end := r.StartTimestamp.Time, r.EndTimestamp.Time
	if !end.After(start) {
		return errInvalidArgument(fmt.Sprintf("EndTimestamp %s must be later than StartTimestamp %s.", end.UTC().Format(time.RFC3339Nano), start.UTC().Format(time.RFC3339Nano)))
	}
	if end.Sub(start) > maxClipRange {
		return errInvalidArgument(fmt.Sprintf("The time range from %s to %s is longer than 24 hours; EndTimestamp must be within 24 hours of StartTimestamp.", start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339)))
	}
	return nil
}

// opGetClip returns an MP4 of the fragments in the range: the init segment
// of the first one, then the fragments (moof+mdat) up to the first whose
// init differs, at most 200 fragments and 100 MB.
func (s *Server) opGetClip(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.GetClipInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	sel := in.ClipFragmentSelector
	if sel == nil {
		return nil, missing("clipFragmentSelector")
	}
	if sel.FragmentSelectorType == "" {
		return nil, missing("clipFragmentSelector.fragmentSelectorType")
	}
	producer, e := checkSelectorType("clipFragmentSelector.fragmentSelectorType", sel.FragmentSelectorType, "")
	if e != nil {
		return nil, e
	}
	if e := checkRange("clipFragmentSelector.timestampRange", sel.TimestampRange, false); e != nil {
		return nil, e
	}
	st, e := s.findStream(in.StreamName, in.StreamARN)
	if e != nil {
		return nil, e
	}
	if st.RetentionHours == 0 {
		return nil, noRetention(st)
	}
	end := sel.TimestampRange.EndTimestamp.Time
	frags := selectFragments(s.fragments(st), producer, sel.TimestampRange.StartTimestamp.Time, &end)
	if len(frags) == 0 {
		return nil, errNotFound("No fragments found in the stream for the clip request.")
	}
	out := append([]byte(nil), frags[0].initBytes...)
	total := len(out)
	n := 0
	first := map[uint32]uint64{}
	for i := range frags {
		f := &frags[i]
		if f.Init != frags[0].Init || n == maxClipFragments || total+int(f.Size) > maxClipBytes && n > 0 {
			break
		}
		b, err := f.read()
		if err != nil {
			return nil, &apiError{http.StatusInternalServerError, "InternalFailure", "Could not read fragment " + strconv.FormatUint(f.Number, 10) + ": " + err.Error()}
		}
		out = append(out, rebaseFragment(b, first)...)
		total += len(b)
		n++
	}
	s.log.Debug("clip served", "stream", st.Name, "fragments", n, "of", len(frags), "bytes", len(out))
	return rawResponse{contentType: "video/mp4", body: out}, nil
}

// opListFragments lists the archive in ingestion order, in pages.
func (s *Server) opListFragments(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.ListFragmentsInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	limit := int64(defaultListFragments)
	if in.MaxResults != nil {
		limit = *in.MaxResults
		if limit < 1 || limit > kvsproto.MaxListFragmentsResults {
			return nil, errInvalidArgument(validationMsg("maxResults", strconv.FormatInt(limit, 10), "Member must have value between 1 and 1000"))
		}
	}
	after := uint64(0)
	if in.NextToken != "" {
		last, ok := decodeToken(in.NextToken)
		n, err := strconv.ParseUint(last, 10, 64)
		if !ok || err != nil {
			return nil, errInvalidArgument("The NextToken is not valid; pass the NextToken of the previous ListFragments response unchanged.")
		}
		after = n
	}
	st, e := s.findStream(in.StreamName, in.StreamARN)
	if e != nil {
		return nil, e
	}
	all := s.fragments(st)
	if sel := in.FragmentSelector; sel != nil {
		if sel.FragmentSelectorType == "" {
			return nil, missing("fragmentSelector.fragmentSelectorType")
		}
		producer, e := checkSelectorType("fragmentSelector.fragmentSelectorType", sel.FragmentSelectorType, "")
		if e != nil {
			return nil, e
		}
		if e := checkRange("fragmentSelector.timestampRange", sel.TimestampRange, false); e != nil {
			return nil, e
		}
		end := sel.TimestampRange.EndTimestamp.Time
		all = selectFragments(all, producer, sel.TimestampRange.StartTimestamp.Time, &end)
		sort.SliceStable(all, func(i, j int) bool { return all[i].Number < all[j].Number })
	}
	out := kvsproto.ListFragmentsOutput{Fragments: []kvsproto.Fragment{}}
	for i := range all {
		f := &all[i]
		if f.Number <= after {
			continue
		}
		if int64(len(out.Fragments)) == limit {
			out.NextToken = encodeToken(out.Fragments[len(out.Fragments)-1].FragmentNumber)
			break
		}
		out.Fragments = append(out.Fragments, kvsproto.Fragment{
			FragmentNumber:               strconv.FormatUint(f.Number, 10),
			FragmentSizeInBytes:          f.Size,
			ProducerTimestamp:            kvsproto.Timestamp{Time: f.Producer},
			ServerTimestamp:              kvsproto.Timestamp{Time: f.Server},
			FragmentLengthInMilliseconds: f.Duration.Milliseconds(),
		})
	}
	return out, nil
}

// hlsSession is one GetHLSStreamingSessionURL session.
type hlsSession struct {
	streamARN  string
	mode       string
	producer   bool
	start      time.Time
	end        *time.Time
	expires    time.Time
	max        int
	disc       string
	display    bool
	firstLive  uint64 // LIVE: the first fragment number the session may list
	streamName string
}

func newSessionToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// opGetHLSURL creates an HLS session and returns its master playlist URL.
func (s *Server) opGetHLSURL(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.GetHLSStreamingSessionURLInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	mode := in.PlaybackMode
	switch mode {
	case "":
		mode = kvsproto.PlaybackLive
	case kvsproto.PlaybackLive, kvsproto.PlaybackLiveReplay, kvsproto.PlaybackOnDemand:
	default:
		return nil, enumError("playbackMode", mode, kvsproto.PlaybackLive, kvsproto.PlaybackLiveReplay, kvsproto.PlaybackOnDemand)
	}
	switch in.ContainerFormat {
	case "", kvsproto.ContainerFragmentedMP4:
	case kvsproto.ContainerMPEGTS:
		return nil, errInvalidArgument("ContainerFormat MPEG_TS is not emulated by kvsrtc local: only FRAGMENTED_MP4 sessions are served (the real service supports both).")
	default:
		return nil, enumError("containerFormat", in.ContainerFormat, kvsproto.ContainerFragmentedMP4, kvsproto.ContainerMPEGTS)
	}
	sess := &hlsSession{mode: mode, max: defaultHLSLiveResults}
	if mode == kvsproto.PlaybackOnDemand {
		sess.max = defaultHLSOnDemandResults
	}
	selType := ""
	if sel := in.HLSFragmentSelector; sel != nil {
		selType = sel.FragmentSelectorType
	}
	producer, e := checkSelectorType("hLSFragmentSelector.fragmentSelectorType", selType, kvsproto.SelectorServerTimestamp)
	if e != nil {
		return nil, e
	}
	sess.producer = producer
	switch mode {
	case kvsproto.PlaybackLive:
		if sel := in.HLSFragmentSelector; sel != nil && sel.TimestampRange != nil {
			return nil, errInvalidArgument("HLSFragmentSelector.TimestampRange must not be set when PlaybackMode is LIVE.")
		}
	default:
		sel := in.HLSFragmentSelector
		if sel == nil {
			return nil, errInvalidArgument(fmt.Sprintf("HLSFragmentSelector with a TimestampRange is required when PlaybackMode is %s.", mode))
		}
		if e := checkRange("hLSFragmentSelector.timestampRange", sel.TimestampRange, mode == kvsproto.PlaybackLiveReplay); e != nil {
			return nil, e
		}
		sess.start = sel.TimestampRange.StartTimestamp.Time
		if sel.TimestampRange.EndTimestamp != nil {
			end := sel.TimestampRange.EndTimestamp.Time
			sess.end = &end
		}
	}
	sess.disc = in.DiscontinuityMode
	switch sess.disc {
	case "":
		sess.disc = kvsproto.DiscontinuityAlways
		if producer {
			sess.disc = kvsproto.DiscontinuityNever
		}
	case kvsproto.DiscontinuityAlways, kvsproto.DiscontinuityNever, kvsproto.DiscontinuityOnDiscontinuity:
	default:
		return nil, enumError("discontinuityMode", sess.disc, kvsproto.DiscontinuityAlways, kvsproto.DiscontinuityNever, kvsproto.DiscontinuityOnDiscontinuity)
	}
	switch in.DisplayFragmentTimestamp {
	case "", kvsproto.DisplayTimestampNever:
	case kvsproto.DisplayTimestampAlways:
		sess.display = true
	default:
		return nil, enumError("displayFragmentTimestamp", in.DisplayFragmentTimestamp, kvsproto.DisplayTimestampAlways, kvsproto.DisplayTimestampNever)
	}
	expires := kvsproto.DefaultHLSExpires
	if in.Expires != nil {
		expires = *in.Expires
		if expires < kvsproto.MinHLSExpires || expires > kvsproto.MaxHLSExpires {
			return nil, errInvalidArgument(validationMsg("expires", strconv.Itoa(expires), "Member must have value between 300 and 43200"))
		}
	}
	if v := in.MaxMediaPlaylistFragmentResults; v != nil {
		if *v < 1 || *v > kvsproto.MaxHLSMaxResults {
			return nil, errInvalidArgument(validationMsg("maxMediaPlaylistFragmentResults", strconv.FormatInt(*v, 10), "Member must have value between 1 and 5000"))
		}
		sess.max = int(*v)
	}
	st, e := s.findStream(in.StreamName, in.StreamARN)
	if e != nil {
		return nil, e
	}
	if st.RetentionHours == 0 {
		return nil, noRetention(st)
	}
	sess.streamARN, sess.streamName = st.ARN, st.Name
	now := s.now()
	all := s.fragments(st)
	if mode == kvsproto.PlaybackLive {
		var recent []archivedFragment
		for i := range all {
			if now.Sub(all[i].Server) <= liveWindow {
				recent = append(recent, all[i])
			}
		}
		if len(recent) == 0 {
			return nil, errNotFound(fmt.Sprintf("No fragments found in the stream %s in the last 30 seconds; a LIVE session needs a stream that is being recorded (use ON_DEMAND or LIVE_REPLAY for older media).", st.Name))
		}
		first := len(all) - sess.max
		if first < 0 {
			first = 0
		}
		sess.firstLive = all[first].Number
	} else if len(selectFragments(all, producer, sess.start, sess.end)) == 0 {
		return nil, errNotFound("No fragments found in the stream for the HLS streaming session request in the requested time range.")
	}
	sess.expires = now.Add(time.Duration(expires) * time.Second)
	tok := newSessionToken()
	a := s.archive
	a.hlsMu.Lock()
	if a.hls == nil {
		a.hls = map[string]*hlsSession{}
	}
	for t, o := range a.hls {
		if now.After(o.expires) {
			delete(a.hls, t)
		}
	}
	full := len(a.hls) >= maxHLSSessions
	if !full {
		a.hls[tok] = sess
	}
	a.hlsMu.Unlock()
	if full {
		return nil, errClientLimit(fmt.Sprintf("kvsrtc local holds at most %d HLS sessions at once; wait for sessions to expire or request shorter Expires.", maxHLSSessions))
	}
	s.log.Info("HLS session created", "stream", st.Name, "mode", mode, "expires", sess.expires.UTC().Format(time.RFC3339))
	return kvsproto.GetHLSStreamingSessionURLOutput{HLSStreamingSessionURL: s.URL() + kvsproto.PathHLSMasterPlaylist + "?SessionToken=" + tok}, nil
}

// candidates returns the fragments a session may list, in playlist order.
func (sess *hlsSession) candidates(all []archivedFragment) []archivedFragment {
	if sess.mode == kvsproto.PlaybackLive {
		var out []archivedFragment
		for i := range all {
			if all[i].Number >= sess.firstLive {
				out = append(out, all[i])
			}
		}
		return out
	}
	return selectFragments(all, sess.producer, sess.start, sess.end)
}

// serveHLS answers the unsigned HLS GETs of a session.
func (s *Server) serveHLS(w http.ResponseWriter, r *http.Request, reqID string) {
	fail := func(e *apiError) {
		s.log.Info("HLS request rejected", "path", r.URL.Path, "status", e.Status, "code", e.Code, "reason", e.Message, "request_id", reqID)
		writeAPIError(w, e, apiControl)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		fail(&apiError{http.StatusMethodNotAllowed, kvsproto.ErrCodeInvalidArgument, "HLS resources are read with GET."})
		return
	}
	q := r.URL.Query()
	tok := q.Get("SessionToken")
	a := s.archive
	a.hlsMu.Lock()
	sess := a.hls[tok]
	a.hlsMu.Unlock()
	now := s.now()
	if tok == "" || sess == nil {
		fail(&apiError{http.StatusUnauthorized, kvsproto.ErrCodeNotAuthorized, "The SessionToken is missing or not valid; get a new HLS streaming session URL with GetHLSStreamingSessionURL."})
		return
	}
	if now.After(sess.expires) {
		fail(&apiError{http.StatusUnauthorized, kvsproto.ErrCodeNotAuthorized, "The HLS streaming session has expired (its Expires has passed); get a new URL with GetHLSStreamingSessionURL."})
		return
	}
	if tn := q.Get("TrackNumber"); tn != "" && tn != "1" {
		fail(errInvalidArgument("TrackNumber " + tn + " is not served: kvsrtc local serves every track of a fragment in one media playlist, TrackNumber 1."))
		return
	}
	st, ok := s.store.streamByARN(sess.streamARN)
	if !ok {
		fail(errNotFound(streamNotFoundMsg(sess.streamName)))
		return
	}
	all := s.fragments(st)
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	switch r.URL.Path {
	case kvsproto.PathHLSMasterPlaylist:
		h.Set("Content-Type", "application/vnd.apple.mpegurl")
		_, _ = w.Write([]byte(masterPlaylist(sess, tok, sess.candidates(all))))
	case kvsproto.PathHLSMediaPlaylist:
		h.Set("Content-Type", "application/vnd.apple.mpegurl")
		_, _ = w.Write([]byte(mediaPlaylist(sess, tok, sess.candidates(all), now)))
	case kvsproto.PathHLSInitFragment, kvsproto.PathHLSMediaFragment:
		f, e := sessionFragment(sess, all, q.Get("FragmentNumber"), r.URL.Path == kvsproto.PathHLSInitFragment)
		if e != nil {
			fail(e)
			return
		}
		b := f.initBytes
		if r.URL.Path == kvsproto.PathHLSMediaFragment {
			var err error
			if b, err = f.read(); err != nil {
				fail(errNotFound("Fragment " + strconv.FormatUint(f.Number, 10) + " is no longer available."))
				return
			}
		}
		h.Set("Content-Type", "video/mp4")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	default:
		fail(&apiError{http.StatusNotFound, kvsproto.ErrCodeUnknownOperation, "No HLS resource " + r.URL.Path + "; the session serves getHLSMasterPlaylist.m3u8, getHLSMediaPlaylist.m3u8, getMP4InitFragment.mp4 and getMP4MediaFragment.mp4."})
	}
}

// sessionFragment finds the fragment a media or init request names. An
// init request without FragmentNumber gets the init of the session's
// first fragment.
func sessionFragment(sess *hlsSession, all []archivedFragment, num string, init bool) (*archivedFragment, *apiError) {
	cands := sess.candidates(all)
	if num == "" {
		if !init {
			return nil, errInvalidArgument("FragmentNumber is required.")
		}
		if len(cands) == 0 {
			return nil, errNotFound("The session has no fragments.")
		}
		return &cands[0], nil
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return nil, errInvalidArgument(validationMsg("FragmentNumber", num, "Member must satisfy regular expression pattern: ^[0-9]+$"))
	}
	for i := range cands {
		if cands[i].Number == n {
			return &cands[i], nil
		}
	}
	return nil, errNotFound("Fragment " + num + " is not in this HLS session (it may have passed the stream's data retention).")
}

func hlsQuery(tok string, extra ...string) string {
	v := url.Values{"SessionToken": {tok}, "TrackNumber": {"1"}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v.Encode()
}

// masterPlaylist has one variant: the media playlist of track 1.
func masterPlaylist(sess *hlsSession, tok string, cands []archivedFragment) string {
	bw := int64(1)
	for i := range cands {
		if d := cands[i].Duration.Seconds(); d > 0 {
			if b := int64(float64(cands[i].Size*8) / d); b > bw {
				bw = b
			}
		}
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d\n", bw)
	b.WriteString("getHLSMediaPlaylist.m3u8?" + hlsQuery(tok) + "\n")
	return b.String()
}

// mediaPlaylist lists the session's window of fragments.
func mediaPlaylist(sess *hlsSession, tok string, cands []archivedFragment, now time.Time) string {
	// Discontinuity marks over every candidate, so that the discontinuity
	// sequence stays consistent as a LIVE window slides.
	marks := make([]bool, len(cands))
	target := 1
	for i := range cands {
		if t := int(math.Ceil(cands[i].Duration.Seconds())); t > target {
			target = t
		}
		if i == 0 {
			continue
		}
		prev, cur := &cands[i-1], &cands[i]
		gap := timestampOf(cur, sess.producer).Sub(timestampOf(prev, sess.producer).Add(prev.Duration))
		marks[i] = cur.Init != prev.Init || sess.disc == kvsproto.DiscontinuityAlways ||
			sess.disc == kvsproto.DiscontinuityOnDiscontinuity && (gap > discontinuityGap || gap < -discontinuityGap)
	}
	first, last := 0, len(cands)
	switch sess.mode {
	case kvsproto.PlaybackLive:
		if len(cands) > sess.max {
			first = len(cands) - sess.max
		}
	case kvsproto.PlaybackOnDemand:
		if len(cands) > sess.max {
			last = sess.max
		}
	case kvsproto.PlaybackLiveReplay:
		if len(cands) > kvsproto.MaxHLSMaxResults {
			last = kvsproto.MaxHLSMaxResults
		}
	}
	discSeq := 0
	for i := 1; i <= first && i < len(marks); i++ {
		if marks[i] {
			discSeq++
		}
	}
	seq := uint64(0)
	if sess.mode == kvsproto.PlaybackLive && len(cands) > 0 {
		seq = cands[first].Number
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", target)
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", seq)
	if discSeq > 0 {
		fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", discSeq)
	}
	if sess.mode == kvsproto.PlaybackOnDemand {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:VOD\n")
	}
	for i := first; i < last; i++ {
		f := &cands[i]
		if i > first && marks[i] {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if i == first || f.Init != cands[i-1].Init {
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?%s\"\n", hlsQuery(tok, "FragmentNumber", strconv.FormatUint(f.Number, 10)))
		}
		if sess.display {
			fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", timestampOf(f, sess.producer).UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n", f.Duration.Seconds())
		b.WriteString("getMP4MediaFragment.mp4?" + hlsQuery(tok, "FragmentNumber", strconv.FormatUint(f.Number, 10)) + "\n")
	}
	ended := sess.mode == kvsproto.PlaybackOnDemand ||
		sess.mode == kvsproto.PlaybackLiveReplay && sess.end != nil && now.After(*sess.end) && last == len(cands)
	if ended {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return b.String()
}

// boxAt returns the box at b[off:]: its type, header length and total size
// (0 when b[off:] does not hold a whole box).
func boxAt(b []byte, off int) (typ string, hdr, size int) {
	if len(b)-off < 8 {
		return "", 0, 0
	}
	sz := uint64(binary.BigEndian.Uint32(b[off:]))
	hdr = 8
	switch sz {
	case 1:
		if len(b)-off < 16 {
			return "", 0, 0
		}
		sz, hdr = binary.BigEndian.Uint64(b[off+8:]), 16
	case 0:
		sz = uint64(len(b) - off)
	}
	if sz < uint64(hdr) || sz > uint64(len(b)-off) {
		return "", 0, 0
	}
	return string(b[off+4 : off+8]), hdr, int(sz)
}

// rebaseFragment rewrites, in a copy of a media segment, the
// baseMediaDecodeTime (tfdt) of each track fragment so that the first
// fragment of a clip starts at 0 on every track; first holds each track's
// first decode time, filled as tracks appear. A segment it cannot walk is
// returned unchanged.
func rebaseFragment(media []byte, first map[uint32]uint64) []byte {
	out := append([]byte(nil), media...)
	for off := 0; off < len(out); {
		typ, hdr, size := boxAt(out, off)
		if size == 0 {
			return media
		}
		if typ == "moof" {
			for t := off + hdr; t < off+size; {
				ttyp, thdr, tsize := boxAt(out[:off+size], t)
				if tsize == 0 {
					return media
				}
				if ttyp == "traf" {
					rebaseTraf(out[t+thdr:t+tsize], first)
				}
				t += tsize
			}
		}
		off += size
	}
	return out
}

func rebaseTraf(traf []byte, first map[uint32]uint64) {
	var track uint32
	haveTrack := false
	for off := 0; off < len(traf); {
		typ, hdr, size := boxAt(traf, off)
		if size == 0 {
			return
		}
		body := traf[off+hdr : off+size]
		switch typ {
		case "tfhd":
			if len(body) >= 8 {
				track, haveTrack = binary.BigEndian.Uint32(body[4:]), true
			}
		case "tfdt":
			if !haveTrack || len(body) < 8 {
				return
			}
			var base uint64
			v1 := body[0] == 1
			if v1 {
				if len(body) < 12 {
					return
				}
				base = binary.BigEndian.Uint64(body[4:])
			} else {
				base = uint64(binary.BigEndian.Uint32(body[4:]))
			}
			f, ok := first[track]
			if !ok {
				f = base
				first[track] = f
			}
			nb := uint64(0)
			if base > f {
				nb = base - f
			}
			if v1 {
				binary.BigEndian.PutUint64(body[4:], nb)
			} else {
				binary.BigEndian.PutUint32(body[4:], uint32(nb))
			}
		}
		off += size
	}
}
