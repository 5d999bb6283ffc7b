"""Outside judging protocols: the way another benchmark's authors score responses, reproduced exactly.

- `safevid.judge.protocols.video_safetybench`: Video-SafetyBench's RJScore (its rule prompt with the
  scenario's policy, a 1–5 rubric over the harmful intention, the expected score over the renormalised
  next-token distribution, unsafe above its threshold).

A protocol's prompt and policy texts are read at run time from the benchmark's published files; none is copied
into safevid.
"""
