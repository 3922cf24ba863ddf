package viewer

import "github.com/pion/transport/v5"

// SetICENet makes the session's ICE use n (tests: unreachable paths).
func SetICENet(c *Config, n transport.Net) { c.iceNet = n }
