#!/bin/sh
# Regenerates the embedded test media in this directory. Run it from anywhere:
#
#   sh media/testsrc/generate.sh
#
# Needs ffmpeg (Debian: apt-get install ffmpeg) built with libx264, libvpx,
# libopus and drawtext (libfreetype), and the DejaVu fonts (fonts-dejavu-core).
# The outputs are committed; run this only to change the pattern. After a
# change, update the constants in testsrc.go (Frames, Duration, ...) and run
# `go test ./media/...`.
set -eu
cd "$(dirname "$0")"

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf
SECONDS_LONG=6
FPS=30
SIZE=640x360

# Moving colour pattern with a burnt-in running clock and frame counter.
VIDEO="testsrc2=size=${SIZE}:rate=${FPS}:duration=${SECONDS_LONG},drawbox=x=0:y=0:w=iw:h=56:color=black@0.6:t=fill,drawtext=fontfile=${FONT}:fontsize=28:fontcolor=white:x=(w-tw)/2:y=14:text='kvsrtc %{pts\:hms}  frame %{eif\:n\:d\:4}'"

# H.264 constrained baseline (profile_idc 66 + constraint_set1), level 3.1,
# Annex-B, one slice per frame, keyframe every 30 frames (1 s) with SPS/PPS
# repeated in front of every IDR.
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$VIDEO" \
  -c:v libx264 -threads 1 -profile:v baseline -level:v 3.1 -pix_fmt yuv420p \
  -preset medium -b:v 450k -maxrate 450k -bufsize 450k \
  -x264-params "keyint=30:min-keyint=30:scenecut=0:repeat-headers=1:aud=0:slices=1" \
  -bitexact -f h264 pattern.h264

# VP8 in IVF, keyframe every 30 frames, no hidden alt-ref frames (WebRTC friendly).
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$VIDEO" \
  -c:v libvpx -threads 1 -deadline good -cpu-used 4 -b:v 450k -maxrate 450k -minrate 100k \
  -g 30 -keyint_min 30 -auto-alt-ref 0 -lag-in-frames 0 -pix_fmt yuv420p \
  -bitexact -f ivf pattern.ivf

# Opus in Ogg: 48 kHz mono 440 Hz tone with a short 880 Hz beep at every second,
# 20 ms frames.
ffmpeg -hide_banner -loglevel error -y -f lavfi \
  -i "sine=frequency=440:beep_factor=2:sample_rate=48000:duration=${SECONDS_LONG}" \
  -c:a libopus -b:a 32k -frame_duration 20 -application audio -ac 1 \
  -bitexact -f ogg tone.ogg

ls -l pattern.h264 pattern.ivf tone.ogg
