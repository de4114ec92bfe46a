"""The Redis side: the Store (one method per Resque event), its Lua scripts, connections."""
