-- One row per callback to deliver; Callbacks::Deliver(id) POSTs `payload` to `url` and records
-- the outcome here. `payload` is JSON text, sent as the request body unchanged.
CREATE TABLE IF NOT EXISTS callbacks (
  id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  url          VARCHAR(512) NOT NULL,
  payload      TEXT         NOT NULL,
  status       VARCHAR(16)  NOT NULL DEFAULT 'pending',
  attempts     INT          NOT NULL DEFAULT 0,
  last_error   TEXT         NULL,
  delivered_at DATETIME     NULL,
  KEY index_callbacks_on_status (status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
