package emulator_test

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func TestPersistAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, emulator.Config{DataDir: dir, TURNDisabled: true, Channels: []string{"kept"}})
	c := newClient(t, srv)
	arn := c.createChannel("second")
	c.mustPost(kvsproto.PathTagResource, kvsproto.TagResourceInput{ResourceARN: arn, Tags: []kvsproto.Tag{{Key: "a", Value: "b"}}}, nil)
	var before kvsproto.ListSignalingChannelsOutput
	c.mustPost(kvsproto.PathListSignalingChannels, struct{}{}, &before)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv2 := start(t, emulator.Config{DataDir: dir, TURNDisabled: true, Channels: []string{"kept"}})
	c2 := newClient(t, srv2)
	var after kvsproto.ListSignalingChannelsOutput
	c2.mustPost(kvsproto.PathListSignalingChannels, struct{}{}, &after)
	if len(after.ChannelInfoList) != 2 {
		t.Fatalf("after restart: %+v", after)
	}
	for i := range before.ChannelInfoList {
		b, a := before.ChannelInfoList[i], after.ChannelInfoList[i]
		if b.ChannelARN != a.ChannelARN || b.Version != a.Version || b.CreationTime != a.CreationTime {
			t.Fatalf("channel changed across restart: %+v vs %+v", b, a)
		}
	}
	var tags kvsproto.ListTagsForResourceOutput
	c2.mustPost(kvsproto.PathListTagsForResource, kvsproto.ListTagsForResourceInput{ResourceARN: arn}, &tags)
	if tags.Tags["a"] != "b" {
		t.Fatalf("tags after restart: %v", tags.Tags)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "channels.json" && e.Name() != emulator.LockFileName {
			t.Errorf("unexpected file %s in the data dir", e.Name())
		}
	}
}

// TestDataDirLocked checks that a second Server on the same data dir is
// refused with the holder's pid and URL, and that Close frees the dir.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, emulator.Config{DataDir: dir, TURNDisabled: true})
	srv2, err := emulator.Start(t.Context(), emulator.Config{DataDir: dir, TURNDisabled: true})
	if err == nil {
		srv2.Close()
		t.Fatal("a second service started on a data dir in use")
	}
	var inUse *emulator.DataDirInUseError
	if !errors.Is(err, emulator.ErrDataDirInUse) || !errors.As(err, &inUse) {
		t.Fatalf("error %v is not ErrDataDirInUse", err)
	}
	if inUse.PID != os.Getpid() || inUse.URL != srv.URL() {
		t.Fatalf("holder %+v, want pid %d url %s", inUse, os.Getpid(), srv.URL())
	}
	for _, want := range []string{strconv.Itoa(os.Getpid()), srv.URL(), "--data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not name %q", err, want)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv3 := start(t, emulator.Config{DataDir: dir, TURNDisabled: true})
	if err := srv3.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDataDirLockedAcrossProcesses checks the lock against a service in a
// child process, and that the kernel frees it when that process is killed.
func TestDataDirLockedAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, dir, false)
	_, err := emulator.Start(t.Context(), emulator.Config{DataDir: dir, TURNDisabled: true})
	var inUse *emulator.DataDirInUseError
	if !errors.As(err, &inUse) || inUse.PID != h.cmd.Process.Pid || inUse.URL != h.URL {
		t.Fatalf("second start: %v (%+v), want held by pid %d at %s", err, inUse, h.cmd.Process.Pid, h.URL)
	}
	h.Kill()
	srv := start(t, emulator.Config{DataDir: dir, TURNDisabled: true})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStaleTempFilesRemoved checks that temporary files left by a write
// interrupted with kill -9 are removed at start, and nothing else.
func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := []string{".channels.json.tmp123456", ".cert.pem.tmp42", ".key.pem.tmp7"}
	for _, n := range append(stale, "notes.txt") {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := start(t, emulator.Config{DataDir: dir, TURNDisabled: true, Channels: []string{"c"}})
	for _, n := range stale {
		if _, err := os.Stat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after start (%v)", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("a file that is not ours was touched: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptDataDirIsReported(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "channels.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if srv, err := emulator.Start(t.Context(), emulator.Config{DataDir: dir, TURNDisabled: true}); err == nil {
		srv.Close()
		t.Fatal("started with a corrupt channels.json")
	}
}

// TestPersistAcrossKill9 runs the service in a child process, creates a
// channel, kills the child with SIGKILL and checks that a new child has it.
func TestPersistAcrossKill9(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, dir, false)
	arn := newURLClient(t, h.URL).createChannel("survivor")
	h.Kill()
	h2 := startHelper(t, dir, false)
	var d kvsproto.DescribeSignalingChannelOutput
	newURLClient(t, h2.URL).mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "survivor"}, &d)
	if d.ChannelInfo.ChannelARN != arn {
		t.Fatalf("after kill -9: %+v, want %s", d.ChannelInfo, arn)
	}
}

// helperProc is the test binary running as a service process.
type helperProc struct {
	URL   string
	cmd   *exec.Cmd
	stdin io.Closer
	done  bool
}

// startHelper starts the test binary as a service process (stopped at the
// end of the test).
func startHelper(t testing.TB, dataDir string, noQuotas bool, extraEnv ...string) *helperProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=serve", "KVSRTC_HELPER_DATADIR="+dataDir)
	if noQuotas {
		cmd.Env = append(cmd.Env, "KVSRTC_HELPER_NOQUOTAS=1")
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin}
	t.Cleanup(h.Kill)
	h.URL = readLine(t, bufio.NewReader(out), "URL ")
	return h
}

// Kill sends SIGKILL and waits.
func (h *helperProc) Kill() {
	if h.done {
		return
	}
	h.done = true
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
	_ = h.stdin.Close()
}

// Stop closes the helper's stdin (a graceful Close) and waits up to 30 s.
func (h *helperProc) Stop() {
	if h.done {
		return
	}
	_ = h.stdin.Close()
	waited := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(waited) }()
	select {
	case <-waited:
		h.done = true
	case <-time.After(30 * time.Second):
		h.Kill()
	}
}
