package admin

// ReloadReport is the answer of POST /api/v1/reload: what a configuration
// reload changed in the running gateway. An invalid file is refused with 422
// and the file's errors (one "file:line: key: reason" line each, as `edgegw
// config check` prints them); nothing changes then.
type ReloadReport struct {
	// File is the configuration file read.
	File string `json:"file"`
	// Applied has one line per change made, by section ("auth: ...",
	// "bridge cloud changed: ..."); empty when the file holds what runs.
	Applied []string `json:"applied"`
	// NeedsRestart lists the keys whose new value the file holds but only a
	// restart applies ("data_dir", "listeners", "mqtt.max_packet_size");
	// their running values stay.
	NeedsRestart []string `json:"needs_restart"`
	// Failed has one line per change that could not be made (a bridge whose
	// certificate no longer loads, a meter port that cannot be built); those
	// parts keep running as they were.
	Failed []string `json:"failed,omitempty"`
}

// ReloadFunc reloads the configuration; a *ReloadError is an invalid file.
type ReloadFunc func() (ReloadReport, error)

// ReloadError is a reload refused because the file is invalid or cannot be
// read: Lines are its errors; the running configuration stays.
type ReloadError struct {
	Lines []string
}

func (e *ReloadError) Error() string {
	s := "configuration not reloaded; the running configuration stays:"
	for _, l := range e.Lines {
		s += "\n" + l
	}
	return s
}
