-- Quick start: every log record as JSON to a local receiver, and injected
-- mail delivered to a maildir under ./sluice-data/maildir so that it has
-- somewhere real to go. WEBHOOK_URL and MAILDIR override the defaults.
local log_hooks = require 'policy-extras.log_hooks'

-- Log hooks first: a catch-all get_queue_config registered before them
-- would take their queues too.
log_hooks:new_json {
  name = 'webhook',
  url = os.getenv 'WEBHOOK_URL' or 'http://127.0.0.1:4242/log',
  log_parameters = { headers = { 'Subject' } },
}

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = os.getenv 'MAILDIR' or './sluice-data/maildir' },
  }
end)
