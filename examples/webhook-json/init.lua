-- The seed's first policy: every log record, as JSON, to one webhook.
-- WEBHOOK_URL overrides the receiver address.
local log_hooks = require 'policy-extras.log_hooks'

log_hooks:new_json {
  name = 'webhook',
  url = os.getenv 'WEBHOOK_URL' or 'http://127.0.0.1:4242/log',
  log_parameters = {
    headers = { 'Subject', 'X-Customer-ID' },
  },
}
