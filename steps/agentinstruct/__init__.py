"""AgentInstruct's three flows (content transformation, seed instructions, suggester-editor
refinement) plus teacher responses, as distilabel Tasks driven by the YAML taxonomy.
"""
