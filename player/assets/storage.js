// kvsrtc web player: storage mode. A channel linked to a KVS stream (WebRTC
// ingestion) is watched through its storage session (Multiviewer): the
// camera sends its media once to the session, which forwards it to every
// viewer. The page opens its viewer WebSocket as for a direct session, asks
// the server to join it to the session (the server calls
// JoinStorageSessionAsViewer: the AWS keys stay there), and the session
// sends an SDP offer without senderClientId over the socket. The page
// answers (video receive-only; audio receive-only, or send-receive for
// push-to-talk) and trickles its candidates as any viewer message. The
// join is asynchronous: as the official JS SDK does, it is asked again
// every 6 s until the offer comes, 5 times at most. Everything after the
// answer (first-frame bound, stall watch, renewals, reconnects) is
// attempt.js's.

// The official JS SDK's re-join interval (plus jitter) and its number of
// joins before it gives up.
const STORAGE_REJOIN_MS = 6000;
const STORAGE_REJOIN_JITTER_MS = 500;
const STORAGE_JOINS = 5;

/** The viewer's signaling client in storage mode: it also takes the storage
 * session's SDP offers (those without senderClientId). */
class StorageSignaling extends Signaling {
  dispatch(data) {
    if (typeof data === 'string' && data.includes('SDP_OFFER')) {
      let msg = null;
      try {
        msg = JSON.parse(data);
      } catch {
        msg = null;
      }
      if (msg && (msg.messageType || msg.MessageType) === 'SDP_OFFER') {
        if (msg.senderClientId) return; // not the storage session: ignored, as before
        const p = decodePayload(msg.messagePayload || msg.MessagePayload);
        if (p && typeof p.sdp === 'string' && this.on.offer) this.on.offer({ type: 'offer', sdp: p.sdp });
        return;
      }
    }
    super.dispatch(data);
  }

  sendAnswer(desc) {
    return this.send('SDP_ANSWER', { type: 'answer', sdp: desc.sdp });
  }
}

/** The attempt's session: a storage page reconnects with its client id (a
 * storage session keeps a viewer's place for a minute after it leaves, for
 * that id only), else a fresh session. */
Attempt.prototype.mintSession = async function (after) {
  const id = this.p.storageId;
  if (id) {
    this.p.storageId = '';
    try {
      const sess = await this.p.api.session(this.p.channel, id, after);
      if (sess.mode === 'storage') return sess;
    } catch {
      // a fresh session below
    }
    if (this.closed) throw new ApiError(0, null, 0);
  }
  return this.p.api.session(this.p.channel, '', after);
};

/** Starts a storage attempt: the socket opens, then the join (joinStorage). */
Attempt.prototype.startStorage = function (sess) {
  this.storage = true;
  this.joins = 0;
  this.offered = false;
  this.useSession(sess);
  this.p.storageId = sess.clientId;
  this.newStoragePeer();
  this.openSignaling(sess.signalingUrl, true);
  this.openTimer = this.timer(this.policy.answerTimeoutMs, () => {
    if (this.joins === 0) this.finish('signaling-lost', 'signaling');
  });
};

Attempt.prototype.newStoragePeer = function () {
  const s = this.session;
  this.pc = new RTCPeerConnection({
    iceServers: s.iceServers,
    iceTransportPolicy: s.iceTransportPolicy || 'all',
    bundlePolicy: 'max-bundle',
  });
  this.wirePeer();
};

/** Asks the server to join the storage session, and schedules the next
 * join (or the end of the attempt) should no offer come. */
Attempt.prototype.joinStorage = async function () {
  if (this.closed || this.offered) return;
  const retry = this.joins++;
  if (retry === 0) {
    this.openTimer = this.clear(this.openTimer);
    this.p.setState('waiting');
  }
  this.p.log(retry === 0 ? 'storage-join' : 'storage-rejoin', retry === 0 ? undefined : String(retry));
  this.joinTimer = this.timer(STORAGE_REJOIN_MS + Math.random() * STORAGE_REJOIN_JITTER_MS, () => {
    if (this.offered) return;
    if (this.joins >= STORAGE_JOINS) {
      this.finish('no-storage-offer', 'storage-offer', { detail: `no offer from the storage session after ${this.joins} joins` });
      return;
    }
    this.joinStorage();
  });
  try {
    await this.p.api.storageJoin(this.p.channel, this.clientId, retry);
  } catch (e) {
    if (this.closed || this.offered) return;
    const d = (e instanceof ApiError ? e : new ApiError(0, null, 0)).diagnosis;
    this.p.log('storage-join-failed', `${d.cause}: ${d.message}`);
    if (d.cause === 'storage-not-configured') {
      // The channel lost its storage configuration: the next attempt's
      // fresh session says how to watch it now.
      this.p.storageId = '';
      this.finish(d.cause, 'storage-join', { retryable: !!d.retryable, diagnosis: d.retryable ? null : d });
      return;
    }
    // Throttling, a 5xx, a socket the service did not know yet: the next
    // join is scheduled. Anything else stays wrong: the server's words.
    if (!d.retryable) this.finish(d.cause, 'storage-join', { retryable: false, diagnosis: d });
  }
};

/** The storage session's offer: answer it. A second offer (a re-join's)
 * replaces the peer connection. */
Attempt.prototype.onStorageOffer = async function (desc) {
  if (this.closed || !this.storage) return;
  const again = this.offered;
  this.p.log('storage-offer', again ? 'a new offer: new peer connection' : undefined);
  if (!this.claim()) return;
  this.offered = true;
  this.joinTimer = this.clear(this.joinTimer);
  if (again) this.replaceStoragePeer();
  const pc = this.pc;
  try {
    await pc.setRemoteDescription(desc);
    if (this.closed || pc !== this.pc) return;
    for (const t of pc.getTransceivers()) {
      const kind = t.receiver && t.receiver.track && t.receiver.track.kind;
      if (kind === 'video') t.direction = 'recvonly';
      if (kind === 'audio') {
        // The talk-back sender of push-to-talk (twoway.js).
        t.direction = this.p.two.talk ? 'sendrecv' : 'recvonly';
        if (!this.talkTr) this.talkTr = t;
      }
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (this.closed || pc !== this.pc) return;
    if (!this.sig || !this.sig.sendAnswer(answer)) {
      this.finish('signaling-lost', 'signaling', { detail: 'the socket closed before the answer' });
      return;
    }
  } catch (e) {
    if (pc === this.pc) this.finish('bad-offer', 'storage-offer', { retryable: false, detail: String(e) });
    return;
  }
  this.p.log('storage-answered');
  for (const c of this.remoteCands.splice(0)) this.addCandidate(c);
  if (again) {
    this.p.two.answered(this);
    return;
  }
  this.answered = true;
  this.afterAnswer();
};

/** Closes the peer connection a new offer replaces; the video element
 * stays and takes the new connection's tracks. */
Attempt.prototype.replaceStoragePeer = function () {
  const old = this.pc;
  if (old) {
    old.ontrack = old.onicecandidate = old.onconnectionstatechange = null;
    old.close();
  }
  const v = this.p.video;
  if (this.vfc !== null && v.cancelVideoFrameCallback) v.cancelVideoFrameCallback(this.vfc);
  this.vfc = null;
  this.stream = null;
  this.remoteCands = [];
  this.talkTr = null;
  this.newStoragePeer();
};
