package spec

// The NotificationChannel types that hand alerts to the tools on-call
// already uses: Alertmanager, PagerDuty and Microsoft Teams.

// AlertmanagerChannel posts alerts to Alertmanager's API v2
// (POST {url}/api/v2/alerts), so its routes, silences and inhibitions apply.
type AlertmanagerChannel struct {
	// URL is Alertmanager's base URL (https://alertmanager.example.com or
	// http://alertmanager.monitoring:9093); /api/v2/alerts is appended.
	URL string `json:"url" yaml:"url"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer …"
	// (for an authenticating proxy in front of Alertmanager).
	BearerTokenFile string `json:"bearerTokenFile,omitempty" yaml:"bearerTokenFile,omitempty"`
	// CAFile holds PEM CA certificates trusted for an https URL instead
	// of the system's.
	CAFile string `json:"caFile,omitempty" yaml:"caFile,omitempty"`
	// DashboardURL is certops' own base URL; when set, each alert's
	// generatorURL links to its certificate or agent in the dashboard.
	DashboardURL string `json:"dashboardURL,omitempty" yaml:"dashboardURL,omitempty"`
}

// PagerDutyChannel sends alerts to PagerDuty's Events API v2.
type PagerDutyChannel struct {
	// RoutingKeyFile holds the integration's routing key (a secret).
	RoutingKeyFile string `json:"routingKeyFile" yaml:"routingKeyFile"`
	// URL overrides the Events API endpoint
	// (https://events.pagerduty.com/v2/enqueue).
	URL string `json:"url,omitempty" yaml:"url,omitempty"`
}

// TeamsChannel posts Adaptive Cards to a Microsoft Teams Workflows (or
// incoming) webhook whose URL is read from a file.
type TeamsChannel struct {
	WebhookURLFile string `json:"webhookURLFile" yaml:"webhookURLFile"`
}

// moreChannels checks the settings of the channels above.
func (c *checker) moreChannels(s *NotificationChannelSpec) {
	if a := s.Alertmanager; a != nil {
		const path = "spec.alertmanager"
		if a.URL == "" {
			c.errorf(path+".url", "required")
		} else {
			c.httpURL(path+".url", a.URL, false)
			if a.BearerTokenFile != "" && httpURLProblem(a.URL, true) != "" && httpURLProblem(a.URL, false) == "" {
				c.errorf(path+".bearerTokenFile", "set with a plain-http URL to a host that is not loopback: the token would travel unencrypted; use https")
			}
		}
		c.absPath(path+".bearerTokenFile", a.BearerTokenFile)
		c.absPath(path+".caFile", a.CAFile)
		if a.DashboardURL != "" {
			c.httpURL(path+".dashboardURL", a.DashboardURL, false)
		}
	}
	if p := s.PagerDuty; p != nil {
		c.requiredAbsPath("spec.pagerduty.routingKeyFile", p.RoutingKeyFile)
		if p.URL != "" {
			c.httpURL("spec.pagerduty.url", p.URL, true)
		}
	}
	if t := s.Teams; t != nil {
		c.requiredAbsPath("spec.teams.webhookURLFile", t.WebhookURLFile)
	}
}
