-- ArgoCD health check of llm-proxy.io/LlmProxy. Uses only the base and table libraries, which ArgoCD opens
-- without `useOpenLibs`.
--   spec.suspend                                   -> Suspended
--   no status, or observedGeneration < generation  -> Progressing (the operator has not seen the change yet)
--   Degraded=True                                  -> Degraded, with its message
--   Ready=True                                     -> Healthy
--   Ready=False while Progressing is not True      -> Degraded, with Ready's message (a failure, not a rollout)
--   anything else                                  -> Progressing
local hs = {}

local function condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Reconciliation is suspended (spec.suspend is true)"
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local conditions = obj.status.conditions
local degraded = condition(conditions, "Degraded")
local ready = condition(conditions, "Ready")
local progressing = condition(conditions, "Progressing")

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "The LlmProxy is degraded")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "The LlmProxy is ready")
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason ~= nil and ready.reason ~= ""
    and (progressing == nil or progressing.status ~= "True") then
  hs.status = "Degraded"
  hs.message = describe(ready, "The LlmProxy is not ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(progressing, describe(ready, "Waiting for the LlmProxy to become ready"))
return hs
