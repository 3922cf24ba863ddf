package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// openSources opens the video source and the optional audio source.
func (f *masterFlags) openSources(env *Env, log *slog.Logger) (video, audio media.Source, err error) {
	scfg := media.SourceConfig{FPS: f.fps, Logger: log}
	switch f.source {
	case "testsrc":
		video, err = media.NewTestSource(rtc.CodecH264, scfg)
	case "testsrc-vp8":
		video, err = media.NewTestSource(rtc.CodecVP8, scfg)
	case "-":
		var in io.Reader = env.Stdin
		if in == nil {
			return nil, nil, fmt.Errorf("%w: --source -: no standard input", ErrUsage)
		}
		video, err = media.NewH264Stream(in, scfg)
	default:
		video, err = openFile("--source", f.source, scfg)
	}
	if err != nil {
		return nil, nil, err
	}
	if c := video.Codec(); c != rtc.CodecH264 && c != rtc.CodecVP8 {
		video.Close()
		return nil, nil, fmt.Errorf("%w: --source %s is %s audio; give a video (.h264 or .ivf) and pass audio with --audio-file", ErrUsage, f.source, c)
	}
	switch {
	case f.audio:
		audio, err = media.NewTestSource(rtc.CodecOpus, scfg)
	case f.audioFile != "":
		audio, err = openFile("--audio-file", f.audioFile, scfg)
		if err == nil && audio.Codec() != rtc.CodecOpus {
			audio.Close()
			err = fmt.Errorf("%w: --audio-file %s is %s video; give an Ogg/Opus file (ffmpeg -i IN -vn -c:a libopus out.ogg)", ErrUsage, f.audioFile, audio.Codec())
		}
	}
	if err != nil {
		video.Close()
		return nil, nil, err
	}
	return video, audio, nil
}

// openFile opens a media file; a missing or unusable file is a usage
// error.
func openFile(flagName, path string, cfg media.SourceConfig) (media.Source, error) {
	src, err := media.OpenFile(path, cfg)
	switch {
	case err == nil:
		return src, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s %s: no such file", ErrUsage, flagName, path)
	}
	// Unsupported or broken media, a directory, no permission: all are
	// the user's input to fix.
	return nil, fmt.Errorf("%w: %s: %w", ErrUsage, flagName, err)
}
