# Gradebook for a course: records scores and computes weighted final grades.
class Gradebook
  # Weights of each assessment category; they must add up to 1.0.
  DEFAULT_WEIGHTS = { homework: 0.3, midterm: 0.3, final: 0.4 }.freeze

  LETTERS = [[90, 'A'], [80, 'B'], [70, 'C'], [60, 'D'], [0, 'F']].freeze

  def initialize(weights = DEFAULT_WEIGHTS)
    raise ArgumentError, 'weights must sum to 1.0' unless (weights.values.sum - 1.0).abs < 1e-9

    @weights = weights
    @scores = Hash.new { |hash, student| hash[student] = Hash.new { |h, k| h[k] = [] } }
  end

  # Record a score from 0 to 100 for a student in a category such as :homework.
  def record(student, category, score)
    raise ArgumentError, "unknown category #{category}" unless @weights.key?(category)
    raise ArgumentError, 'score must be between 0 and 100' unless (0..100).cover?(score)

    @scores[student][category] << score
  end

  # Weighted average of the category means; categories without scores count as 0.
  def final_score(student)
    @weights.sum do |category, weight|
      list = @scores[student][category]
      average = list.empty? ? 0 : list.sum.to_f / list.size
      average * weight
    end.round(1)
  end

  # Letter grade from the final score.
  def letter(student)
    score = final_score(student)
    LETTERS.find { |threshold, _| score >= threshold }.last
  end

  # Students sorted from highest to lowest final score.
  def ranking
    @scores.keys.sort_by { |student| -final_score(student) }
  end
end
