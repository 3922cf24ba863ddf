package player

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"
)

// moduleSources are the files of kvs-viewer.js, joined in this order into
// one ES module. All but the last are the built-in pages' own scripts (they
// inline them with app.js instead of element.js): the element and the
// pages run one implementation of the connect policy.
var moduleSources = []string{"signaling.js", "api.js", "twoway.js", "player.js", "attempt.js", "relay.js", "storage.js", "tile.js", "element.js"}

// moduleAssets are the <kvs-viewer> module and its TypeScript declarations.
type moduleAssets struct {
	js, types asset
}

// loadModule builds kvs-viewer.js: the server's page configuration (the
// retry policy, loopback-only) and the tile's style sheet as constants,
// then the player's scripts and the element.
func (s *Server) loadModule() error {
	cfg, err := json.Marshal(s.pageConfig().Policy)
	if err != nil {
		return err
	}
	style, err := assetFS.ReadFile("assets/tile.css")
	if err != nil {
		return err
	}
	styleJS, err := json.Marshal(string(style))
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("// kvs-viewer.js: the <kvs-viewer> element of kvsrtc (an ES module; types: kvs-viewer.d.ts).\n")
	b.WriteString("const KVS_CONFIG = {\"policy\": ")
	b.Write(cfg)
	if s.cfg.LoopbackOnly {
		b.WriteString(", \"loopbackOnly\": true")
	}
	b.WriteString("};\nconst KVS_STYLE = ")
	b.Write(styleJS)
	b.WriteString(";\n")
	for _, f := range moduleSources {
		src, err := assetFS.ReadFile("assets/" + f)
		if err != nil {
			return err
		}
		b.Write(src)
		b.WriteString("\n")
	}
	types, err := assetFS.ReadFile("assets/kvs-viewer.d.ts")
	if err != nil {
		return err
	}
	mk := func(body []byte, ctype string) asset {
		sum := sha256.Sum256(body)
		return asset{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	s.module = moduleAssets{
		js:    mk(b.Bytes(), "text/javascript; charset=utf-8"),
		types: mk(types, "application/typescript; charset=utf-8"),
	}
	return nil
}

// serveAsset answers a GET of a (public) asset with its ETag.
func serveAsset(a asset, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", a.ctype)
		w.Header().Set("ETag", a.etag)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	}
}

// apiRoutes is the API's handler tree, relative to where it is mounted:
// the built-in server mounts it at /api/ behind its token (wrap = s.api),
// NewHandler wherever the app likes behind the app's hook. With
// publicModule the module and its types need no credential (they hold no
// secret, and a page whose API calls carry a bearer token loads them with
// a plain <script type="module">); the built-in server keeps every script
// behind its token, as before.
func (s *Server) apiRoutes(wrap func(func(http.ResponseWriter, *http.Request)) http.HandlerFunc, publicModule bool) *http.ServeMux {
	m := http.NewServeMux()
	js, types := serveAsset(s.module.js, "kvs-viewer.js"), serveAsset(s.module.types, "kvs-viewer.d.ts")
	if !publicModule {
		js, types = wrap(js), wrap(types)
	}
	m.HandleFunc("GET /kvs-viewer.js", js)
	m.HandleFunc("GET /kvs-viewer.d.ts", types)
	m.HandleFunc("GET /channels", wrap(s.handleChannels))
	m.HandleFunc("POST /session", wrap(s.handleSession))
	m.HandleFunc("POST /storage-join", wrap(s.handleStorageJoin))
	m.HandleFunc("POST /diagnose", wrap(s.handleDiagnose))
	m.HandleFunc("POST /report", wrap(s.handleReport))
	return m
}
