package emulator

import (
	"fmt"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// stream is one Kinesis video stream's control-plane record (its media is
// in the archive, archive.go). Values handed out of the store are copies.
type stream struct {
	Name           string            `json:"name"`
	ARN            string            `json:"arn"`
	DeviceName     string            `json:"deviceName,omitempty"`
	MediaType      string            `json:"mediaType,omitempty"`
	KmsKeyID       string            `json:"kmsKeyId"`
	RetentionHours int               `json:"dataRetentionInHours"`
	StorageTier    string            `json:"storageTier,omitempty"`
	CreationMillis int64             `json:"creationMillis"`
	Version        string            `json:"version"`
	Tags           map[string]string `json:"tags,omitempty"`
}

func (st *stream) info() kvsproto.StreamInfo {
	return kvsproto.StreamInfo{
		DeviceName:           st.DeviceName,
		StreamName:           st.Name,
		StreamARN:            st.ARN,
		MediaType:            st.MediaType,
		KmsKeyID:             st.KmsKeyID,
		Version:              st.Version,
		Status:               "ACTIVE",
		CreationTime:         float64(st.CreationMillis) / 1000,
		DataRetentionInHours: st.RetentionHours,
	}
}

func (st *stream) clone() *stream {
	cp := *st
	if st.Tags != nil {
		cp.Tags = make(map[string]string, len(st.Tags))
		for k, v := range st.Tags {
			cp.Tags[k] = v
		}
	}
	return &cp
}

// maxStreams is the emulator's limit of streams per account and region
// (AWS's default quota is not published as a fixed number; see
// docs/EMULATOR.md).
const maxStreams = 10000

// loadStreams adds the streams read from the data directory; the caller
// holds the directory's lock.
func (s *store) loadStreams(list []*stream) error {
	for _, st := range list {
		a, err := kvsproto.ParseStreamARN(st.ARN)
		if err != nil || a.Name != st.Name || st.Version == "" {
			return fmt.Errorf("emulator: %s: bad stream entry %q (%v)", s.path, st.Name, err)
		}
		if a.Region != s.region || a.Account != s.account {
			return fmt.Errorf("emulator: %s: stream %s belongs to region %s account %s, but the service runs as region %s account %s; use the same --region/--account or another --data-dir",
				s.path, st.Name, a.Region, a.Account, s.region, s.account)
		}
		s.streams[st.Name] = st
		s.streamsByARN[st.ARN] = st
		s.lastStreamMs[st.Name] = st.CreationMillis
	}
	return nil
}

// defaultKmsKey is the KmsKeyId DescribeStream reports for a stream created
// without one: the AWS managed key of the service.
func defaultKmsKey(region, account string) string {
	return "arn:" + kvsproto.PartitionForRegion(region) + ":kms:" + region + ":" + account + ":alias/aws/kinesisvideo"
}

// createStream adds a stream built from st (Name and the optional fields
// set) and returns a copy of it.
func (s *store) createStream(st *stream, now time.Time) (*stream, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.streams[st.Name]; ok {
		return nil, errInUse(fmt.Sprintf("The stream %s already exists (StreamARN %s); choose another StreamName or delete the stream first.", st.Name, old.ARN))
	}
	if len(s.streams) >= maxStreams {
		return nil, &apiError{400, kvsproto.ErrCodeAccountStreamLimit,
			fmt.Sprintf("You have reached the maximum limit of %d streams in %s for this account; delete streams you no longer need.", maxStreams, s.region)}
	}
	ms := now.UnixMilli()
	if last, ok := s.lastStreamMs[st.Name]; ok && ms <= last {
		ms = last + 1 // never reuse the ARN of a deleted stream
	}
	a := kvsproto.StreamARN{Partition: kvsproto.PartitionForRegion(s.region), Region: s.region, Account: s.account, Name: st.Name, CreationMillis: ms}
	st.ARN = a.String()
	st.CreationMillis = ms
	st.Version = newVersion()
	if st.KmsKeyID == "" {
		st.KmsKeyID = defaultKmsKey(s.region, s.account)
	}
	s.streams[st.Name] = st
	s.streamsByARN[st.ARN] = st
	s.lastStreamMs[st.Name] = ms
	if e := s.persistOrError(); e != nil {
		delete(s.streams, st.Name)
		delete(s.streamsByARN, st.ARN)
		return nil, e
	}
	return st.clone(), nil
}

func (s *store) streamByName(name string) (*stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[name]
	if !ok {
		return nil, false
	}
	return st.clone(), true
}

func (s *store) streamByARN(arn string) (*stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streamsByARN[arn]
	if !ok {
		return nil, false
	}
	return st.clone(), true
}

// listStreams returns up to max streams whose name starts with prefix and
// sorts after the name `after`, by name, and whether more remain.
func (s *store) listStreams(prefix, after string, max int) ([]*stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return listPageOf(s.streams, prefix, after, max, (*stream).clone)
}

// removeStream deletes the stream with this ARN if version is "" or
// matches. Channels linked to it keep their configuration (their joins then
// fail with ResourceNotFoundException; see docs/EMULATOR.md).
func (s *store) removeStream(arn, version string) (*stream, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streamsByARN[arn]
	if !ok {
		return nil, errNotFound(streamNotFoundMsg(arn))
	}
	if version != "" && version != st.Version {
		return nil, errVersionMismatch(fmt.Sprintf("The CurrentVersion %s does not match the stream's version %s; describe the stream to get its current version.", version, st.Version))
	}
	delete(s.streams, st.Name)
	delete(s.streamsByARN, st.ARN)
	if e := s.persistOrError(); e != nil {
		s.streams[st.Name] = st
		s.streamsByARN[st.ARN] = st
		return nil, e
	}
	return st, nil
}

// linkStorage sets the media storage configuration of a channel
// (streamARN "" = DISABLED). A stream may be linked to one channel only,
// and must exist with data retention.
func (s *store) linkStorage(channelARN, streamARN string) (*channel, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byARN[channelARN]
	if !ok {
		return nil, errNotFound(channelNotFoundMsg)
	}
	if streamARN != "" {
		st, ok := s.streamsByARN[streamARN]
		if !ok {
			return nil, errNotFound(streamNotFoundMsg(streamARN))
		}
		if st.RetentionHours == 0 {
			return nil, &apiError{400, kvsproto.ErrCodeNoDataRetention,
				fmt.Sprintf("The stream %s has DataRetentionInHours 0; WebRTC ingestion needs a stream that keeps its data: create a stream with DataRetentionInHours 1 or more (aws kinesisvideo create-stream --data-retention-in-hours 24) and link that one.", st.Name)}
		}
		for _, other := range s.byName {
			if other.ARN != channelARN && other.StorageStreamARN == streamARN {
				return nil, errInUse(fmt.Sprintf("The stream %s is already mapped to the signaling channel %s; a stream stores the media of one channel only. Disable media storage on %s first, or use another stream.", st.Name, other.ARN, other.Name))
			}
		}
	}
	old := c.StorageStreamARN
	c.StorageStreamARN = streamARN
	if e := s.persistOrError(); e != nil {
		c.StorageStreamARN = old
		return nil, e
	}
	return c.clone(), nil
}

func streamNotFoundMsg(arnOrName string) string {
	return fmt.Sprintf("The requested stream %s is not found or not active.", arnOrName)
}
