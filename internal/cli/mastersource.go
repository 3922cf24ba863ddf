package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// openSources opens the video source and the optional audio source.
func (f *masterFlags) openSources(env *Env, log *slog.Logger) (video, audio media.Source, err error) {
	scfg := media.SourceConfig{FPS: f.fps, Logger: log}
	var fileAudio media.Source // the Opus track of an MP4 --source
	switch {
	case media.IsRTSPURL(f.source):
		video, err = media.OpenRTSP(f.source, media.RTSPConfig{Logger: log})
		if err != nil && !errors.Is(err, media.ErrFFmpegNotFound) {
			err = fmt.Errorf("%w: --source: %w", ErrUsage, err)
		}
	case media.IsMP4File(f.source):
		var tracks media.MP4Tracks
		tracks, err = media.OpenMP4(f.source, scfg)
		if err != nil {
			err = fmt.Errorf("%w: --source: %w", ErrUsage, err)
		}
		video, fileAudio = tracks.Video, tracks.Audio
	default:
		video, err = openNamed(f.source, env, scfg)
	}
	if err != nil {
		return nil, nil, err
	}
	if c := video.Codec(); c != rtc.CodecH264 && c != rtc.CodecVP8 {
		video.Close()
		return nil, nil, fmt.Errorf("%w: --source %s is %s audio; give a video (.h264, .ivf or .mp4) and pass audio with --audio-file", ErrUsage, f.source, c)
	}
	if fileAudio != nil && (f.audio || f.audioFile != "") {
		log.Info("the MP4's own audio track is replaced by --audio/--audio-file", "source", f.source)
		fileAudio.Close()
		fileAudio = nil
	}
	switch {
	case fileAudio != nil:
		audio = fileAudio
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

// openNamed opens the test pattern, stdin or a file named by --source.
func openNamed(source string, env *Env, scfg media.SourceConfig) (media.Source, error) {
	switch source {
	case "testsrc":
		return media.NewTestSource(rtc.CodecH264, scfg)
	case "testsrc-vp8":
		return media.NewTestSource(rtc.CodecVP8, scfg)
	case "-":
		if env.Stdin == nil {
			return nil, fmt.Errorf("%w: --source -: no standard input", ErrUsage)
		}
		return media.NewH264Stream(env.Stdin, scfg)
	}
	return openFile("--source", source, scfg)
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
