package session

import "time"

// Decision is what the session policy grants one connection.
type Decision struct {
	Profile string
	// Clean: the connection starts a new session (any stored one is discarded).
	Clean bool
	// Expiry is the granted Session Expiry Interval; 0 ends the session with the
	// network connection.
	Expiry time.Duration
	// Cap is the largest expiry a v5 DISCONNECT may set for this session.
	Cap time.Duration
}

// Decide applies DESIGN.md §1 to a CONNECT. requested is the v5 Session Expiry
// Interval (nil when absent, which v5 reads as 0); v3.1.1 has none.
//
//   - v3.1.1 clean-session=1: clean, expiry 0.
//   - v3.1.1 clean-session=0: persistent, expiry = profile expiry, else the cap.
//   - v5 clean-start=1 with expiry 0 (or absent): clean, expiry 0, whatever the
//     profile (the client asked for a session that ends with the connection).
//   - v5 otherwise: clean = clean-start; expiry = profile expiry if the profile
//     fixes one, else min(requested, cap) [MQTT-3.2.2.3.2: CONNACK carries it].
//   - profile clean_start=force: clean, expiry 0, whatever was asked.
func (o Options) Decide(version byte, cleanFlag bool, requested *time.Duration, clientID, username, listener string) Decision {
	p := Profile{Name: "default", CleanStart: CleanClient}
	for _, cand := range o.Profiles {
		if cand.Matches(clientID, username, listener) {
			p = cand
			break
		}
	}
	d := Decision{Profile: p.Name, Clean: cleanFlag, Cap: o.MaxExpiry}
	if p.MaxExpiry > 0 && p.MaxExpiry < d.Cap {
		d.Cap = p.MaxExpiry
	}
	if p.CleanStart == CleanForce {
		d.Clean, d.Expiry, d.Cap = true, 0, 0
		return d
	}
	if p.Expiry != nil {
		d.Cap = min(*p.Expiry, o.MaxExpiry)
	}
	if version < 5 {
		if !cleanFlag {
			d.Expiry = d.Cap
		}
		return d
	}
	asked := time.Duration(0)
	if requested != nil {
		asked = *requested
	}
	switch {
	case cleanFlag && asked == 0:
		d.Expiry = 0
	case p.Expiry != nil:
		d.Expiry = d.Cap
	case requested != nil:
		d.Expiry = min(*requested, d.Cap)
	}
	return d
}
