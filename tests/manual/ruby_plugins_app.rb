# The Ruby side of tests/manual/ruby_plugins_mixed.py: the same job classes as
# tests/loner_lock_jobs.py and tests/retry_plugin_jobs.py, with the real gems (loaded from RUBYLIB).
require 'multi_json'; MultiJson.use :json_gem
require 'resque'
require 'resque-retry'
# resque-loner wraps Job.create in MULTI, which resque-scheduler 5.0's release already is in:
# 'ERR MULTI calls can not be nested'. So the scheduler process runs without it (NO_LONER=1).
require 'resque-loner' unless ENV['NO_LONER']
require 'resque-lock-timeout'
require 'resque/failure/redis'

Resque.redis = ENV.fetch('REDIS_URL')
Resque::Failure::MultipleWithRetrySuppression.classes = [Resque::Failure::Redis]
Resque::Failure.backend = Resque::Failure::MultipleWithRetrySuppression

class NetworkError < StandardError; end

class BackoffJob
  extend Resque::Plugins::ExponentialBackoff
  @queue = :retry
  @backoff_strategy = [0, 3]
  def self.perform(*_args)
    raise NetworkError, "backoff failure \u2717"
  end
end

unless ENV['NO_LONER']
  class LonerJob
    include Resque::Plugins::UniqueJob
    @queue = :loner
    def self.perform(*args)
      Resque.redis.rpush('ruby:ran', MultiJson.dump(['LonerJob', *args]))
    end
  end
end

class LockedJob
  extend Resque::Plugins::LockTimeout
  @queue = :locked
  @lock_timeout = 60
  def self.perform(*args)
    Resque.redis.rpush('ruby:ran', MultiJson.dump(['LockedJob', *args]))
    Resque.redis.blpop('ruby:release', timeout: 20) if ENV['HOLD']
  end
end
